"""Data probes: a source's version changes exactly when its content does."""

from __future__ import annotations

from pathlib import Path

import featurepipe
from featurepipe.config import load_config
from featurepipe.flow.fingerprint import (
    FileHashes,
    library_versions,
    notebook_digest,
    probe_data,
    source_digest,
)

TOML = """
[sources.events]
path = "data/*.csv"
[sources.remote]
path = "s3://bucket/events/*.csv"
[sources.orders]
kind = "sql"
url = "sqlite:///shop.db"
table = "orders"
[features]
base = "events"
event_time = "t"
target = { name = "big", column = "x", greater_than = 1 }
[model]
test_start = 2020-01-01T00:00:00+00:00
[predict]
start = 2020-01-01T00:00:00+00:00
"""


def test_a_glob_source_is_versioned_by_the_content_of_every_file(tmp_path: Path) -> None:
    (tmp_path / "featurepipe.toml").write_text(TOML)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("t,x\n1,1\n")
    config = load_config(tmp_path)
    hashes = FileHashes()

    def version() -> str | None:
        return probe_data(config, ["source:events"], hashes)["source:events"]

    first = version()
    assert first is not None and first.startswith("sha256:")
    (tmp_path / "data" / "a.csv").write_text("t,x\n1,1\n")  # same bytes, new mtime
    assert version() == first
    (tmp_path / "data" / "b.csv").write_text("t,x\n2,2\n")  # a new file
    second = version()
    assert second != first
    (tmp_path / "data" / "b.csv").write_text("t,x\n2,3\n")  # a changed file
    assert version() not in (first, second)
    # sources without a probe cannot be versioned: the step reading them always runs
    found = probe_data(config, ["source:remote", "source:orders", "source:none"], hashes)
    assert found == {"source:remote": None, "source:orders": None, "source:none": None}


def test_the_notebook_digest_ignores_outputs_and_counts(tmp_path: Path) -> None:
    plain = '{"cells": [{"cell_type": "code", "source": ["x = 1"], "metadata": {}}]}'
    ran = (
        '{"cells": [{"cell_type": "code", "source": ["x = 1"], "metadata": {},'
        ' "execution_count": 3, "outputs": [{"output_type": "stream", "text": "1"}]}]}'
    )
    edited = '{"cells": [{"cell_type": "code", "source": ["x = 2"], "metadata": {}}]}'
    paths = []
    for name, text in (("plain", plain), ("ran", ran), ("edited", edited)):
        paths.append(tmp_path / f"{name}.ipynb")
        paths[-1].write_text(text)
    a, b, c = (notebook_digest(p) for p in paths)
    assert a == b != c


def test_featurepipe_is_versioned_by_its_release_and_its_code(tmp_path: Path) -> None:
    """An editable install keeps its version while its code changes: the code is hashed too."""
    package = Path(featurepipe.__file__).parent
    assert (
        library_versions()["featurepipe"] == f"{featurepipe.__version__}+{source_digest(package)}"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    first = source_digest(tmp_path)
    (tmp_path / "a.py").write_text("x = 1\n")  # same bytes, new mtime
    (tmp_path / "notes.md").write_text("not code")
    assert source_digest(tmp_path) == first
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")  # an edit deep in the package
    second = source_digest(tmp_path)
    assert second != first
    (tmp_path / "sub" / "b.py").rename(tmp_path / "b.py")  # same code, another module
    assert source_digest(tmp_path) not in (first, second)
