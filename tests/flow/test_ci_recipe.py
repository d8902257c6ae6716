"""The documented CI workflow is valid YAML and calls featurepipe only with options it has."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
import yaml

from featurepipe.cli import app

RECIPE = Path(__file__).resolve().parents[2] / "docs" / "ci" / "featurepipe-flow.yml"


def _options(*path: str) -> set[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {opt for p in command.params for opt in p.opts}


def test_the_ci_recipe_runs_the_flow_with_a_threshold_and_keeps_notebooks() -> None:
    workflow = yaml.safe_load(RECIPE.read_text())
    steps = workflow["jobs"]["flow"]["steps"]
    commands = [shlex.split(s["run"]) for s in steps if "run" in s]
    featurepipe = [c for c in commands if c[0].endswith("/featurepipe")]
    assert ["make", "install"] in commands
    run = next(c for c in featurepipe if c[1] == "run")
    assert "--fail-under" in run and run[run.index("--fail-under") + 1].startswith("test_roc_auc=")
    for command in featurepipe:
        flags = {a.split("=")[0] for a in command[2:] if a.startswith("-")}
        assert flags <= _options(command[1]), command
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["if"] == "always()"
