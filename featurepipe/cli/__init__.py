"""The ``featurepipe`` command: one module per group of commands, all on one Typer app.

The modules are imported in the order the help lists their commands (Typer lists commands
in the order they are registered).
"""

from __future__ import annotations

# isort: off
from . import run  # noqa: F401 (registers `run`)
from . import runs  # noqa: F401 (`runs`, `runs compare`, `ui`)
from . import sources  # noqa: F401 (`schema`, `serve`, `connectors`)
from . import models  # noqa: F401 (`promote`, `predict`)

# isort: on
from .common import app, exit_code
from .run import _print_summary

__all__ = ["_print_summary", "app", "exit_code", "main"]


def main() -> None:
    """Entry point of the ``featurepipe`` console script."""
    app()
