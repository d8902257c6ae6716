"""The command-line app, its shared options, exit codes and error printing."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler

from .. import __version__
from ..config import load_config
from ..errors import (
    ConfigError,
    FeaturepipeError,
    FlowError,
    GateFailed,
    KernelDied,
    MetricBelowThreshold,
    StepFailed,
    StepTimedOut,
)

if TYPE_CHECKING:
    from ..config import Config


app = typer.Typer(
    help="featurepipe: connectors, types, validation, features, training and tracking "
    "as one reproducible notebook flow.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

ProjectOption = Annotated[
    Path, typer.Option("--project", "-C", help="project folder (holds featurepipe.toml)")
]
HostOption = Annotated[str, typer.Option(help="address to listen on")]
PortOption = Annotated[int, typer.Option(help="port to listen on")]


def _version(value: bool) -> None:
    if value:
        console.print(f"featurepipe {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log more")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=errors, show_path=False)],
    )
    if not verbose:  # MLflow sets up its own loggers on import; this reaches kernels too
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def _parse_parameters(values: list[str]) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: expected KEY=VALUE, e.g. -p max_iter=50")
        try:
            parameters[key] = json.loads(raw)
        except json.JSONDecodeError:
            parameters[key] = raw
    return parameters


def _parse_thresholds(values: list[str]) -> dict[str, float]:
    thresholds: dict[str, float] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        try:
            thresholds[key] = float(raw)
        except ValueError:
            sep = ""
        if not sep or not key:
            raise typer.BadParameter(
                f"{item!r}: expected METRIC=NUMBER, e.g. --fail-under test_roc_auc=0.65"
            )
    return thresholds


# Exit codes of `featurepipe run`, most specific first (documented in README.md).
EXIT_CODES: list[tuple[type[FeaturepipeError], int]] = [
    (MetricBelowThreshold, 6),
    (KernelDied, 5),
    (StepTimedOut, 4),
    (GateFailed, 3),
    (StepFailed, 1),
    (ConfigError, 2),
    (FlowError, 2),
    (FeaturepipeError, 1),
]


def exit_code(exc: FeaturepipeError) -> int:
    """The exit code `featurepipe run` ends with for an error."""
    return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))


def _fail(exc: FeaturepipeError, code: int) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def _load(project: Path) -> Config:
    """The project's configuration; a bad one ends the command with exit code 2."""
    try:
        return load_config(project)
    except ConfigError as exc:
        raise _fail(exc, 2) from exc


def _fmt(value: Any) -> str:
    """Four decimals for a measure; a count (MLflow keeps every metric as a float) as a count."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4f}"
    return str(value)
