"""The public API: every exported name resolves, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import featurepipe


def test_every_exported_name_resolves() -> None:
    for name in featurepipe.__all__:
        assert getattr(featurepipe, name) is not None, name
    assert set(dir(featurepipe)) == set(featurepipe.__all__)


def test_import_does_not_pull_heavy_libraries() -> None:
    code = (
        "import sys, featurepipe, featurepipe.cli\n"
        "heavy = {'mlflow', 'great_expectations', 'papermill', 'sklearn', 'deltalake'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
