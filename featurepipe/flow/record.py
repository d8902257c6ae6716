"""What a flow run records about itself: code version, command, config, libraries and seeds."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import Config
from .fingerprint import config_digest

__all__ = ["frozen_requirements", "git_state", "run_record", "seeds"]

SEED_KEYS = ("random_state", "seed", "random_seed")


def git_state(folder: Path) -> tuple[str, bool | None]:
    """The commit checked out in ``folder`` and whether the work tree differs from it.

    Returns ``("none", None)`` outside a git repository or without git.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "none", None
    return commit, bool(status.strip())


def frozen_requirements() -> str:
    """``name==version`` of every installed distribution, sorted: a ``requirements.txt``.

    Read from the ``*.dist-info`` folder names on ``sys.path``, which is 40x faster than
    parsing every distribution's metadata (0.45 s, a third of a no-op flow run).
    """
    found: dict[str, str] = {}
    for entry in sys.path:
        folder = Path(entry or ".")
        if not folder.is_dir():
            continue
        for info in folder.glob("*.dist-info"):
            name, _, version = info.name[: -len(".dist-info")].partition("-")
            if name and version:
                found.setdefault(name.lower().replace("_", "-"), version)
    return "".join(f"{name}=={version}\n" for name, version in sorted(found.items()))


def seeds(config: Config) -> dict[str, Any]:
    """Every random seed set in the configuration, by key path (e.g. ``model.random_state``)."""
    found: dict[str, Any] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                where = f"{path}.{key}" if path else str(key)
                if key in SEED_KEYS:
                    found[where] = item
                else:
                    walk(item, where)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")

    walk(config.model_dump(mode="json", exclude={"project_dir"}), "")
    return found


def run_record(
    config: Config, command: str | None, environment: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, Any]]:
    """Tags and parameters that make a flow run reproducible.

    Returns:
        (tags, params): git commit and dirty flag, command line, config hash as tags;
        seeds and the reproducibility environment as parameters.
    """
    commit, dirty = git_state(config.project_dir)
    command = command or shlex.join(["featurepipe", *sys.argv[1:]])
    tags = {
        # The MLflow UI shows a run's commit only beside its source name, as "Source".
        "mlflow.source.name": command,
        "mlflow.source.type": "LOCAL",
        "mlflow.source.git.commit": commit,
        "featurepipe.git.dirty": "unknown" if dirty is None else str(dirty).lower(),
        "featurepipe.command": command,
        "featurepipe.config_hash": config_digest(config),
    }
    params: dict[str, Any] = {f"seed.{k}": v for k, v in seeds(config).items()}
    params.update({f"env.{k}": v for k, v in environment.items()})
    return tags, params
