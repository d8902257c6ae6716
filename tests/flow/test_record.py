"""The run record's tags: what the MLflow UI shows as a flow run's source and commit."""

from __future__ import annotations

import subprocess

from featurepipe.flow.record import run_record

from .conftest import Tiny


def _git(tiny: Tiny, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],  # noqa: S607
        cwd=tiny.root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_tags_name_the_source_and_commit_the_ui_shows(tiny: Tiny) -> None:
    _git(tiny, "init", "-q")
    _git(tiny, "add", ".")
    _git(tiny, "commit", "-q", "-m", "tiny")
    tags, _ = run_record(tiny.config, "featurepipe run --force", {})
    # the UI's "Source" is mlflow.source.name, with mlflow.source.git.commit beside it
    assert tags["mlflow.source.name"] == "featurepipe run --force"
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.source.git.commit"] == _git(tiny, "rev-parse", "HEAD")
    assert tags["featurepipe.git.dirty"] == "false"
    tiny.source.write_text("t,x\n2019-01-01T00:00:00Z,5\n")
    tags, _ = run_record(tiny.config, None, {})
    assert tags["featurepipe.git.dirty"] == "true"
    assert tags["mlflow.source.name"] == tags["featurepipe.command"]
    assert tags["mlflow.source.name"].startswith("featurepipe")
