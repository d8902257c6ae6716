"""`featurepipe runs`, `runs compare` and `ui`: flow runs in MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ..config import load_config
from ..errors import FeaturepipeError
from .common import (
    HostOption,
    PortOption,
    ProjectOption,
    _fail,
    _fmt,
    _load,
    app,
    console,
    exit_code,
)

if TYPE_CHECKING:
    pass

runs_app = typer.Typer(
    help="Recent flow runs from MLflow; `runs compare A B` shows what differs.",
    no_args_is_help=False,
)
app.add_typer(runs_app, name="runs")


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


@runs_app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context,
    project: ProjectOption = Path("."),
    limit: Annotated[int, typer.Option("--limit", "-n", help="how many runs")] = 10,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="metric to show (repeatable); default test AUCs"),
    ] = None,
) -> None:
    """List recent flow runs: status, duration, steps run or reused, key metrics."""
    if ctx.invoked_subcommand is not None:
        return
    from ..flow.runs import KEY_METRICS, list_runs

    try:
        found = list_runs(load_config(project), limit)
    except FeaturepipeError as exc:
        raise _fail(exc, exit_code(exc)) from exc
    if not found:
        console.print("no flow runs yet: `featurepipe run` starts one.")
        return
    metrics = list(metric or KEY_METRICS)
    table = Table(title="flow runs, newest first", title_justify="left")
    table.add_column("run", no_wrap=True)
    for column in ("status", "time", "steps run", *metrics):
        table.add_column(column, justify="right" if column in metrics else "left")
    for r in found:
        statuses = {k[len("status.") :]: v for k, v in r.params.items() if k.startswith("status.")}
        ran = sum(v != "up to date" for v in statuses.values())
        steps = f"{ran}/{len(statuses)}"
        values = [_fmt(r.metrics[m]) if m in r.metrics else "-" for m in metrics]
        table.add_row(r.flow_run, r.status, _duration(r.seconds), steps, *values)
    console.print(table)


@runs_app.command("compare")
def runs_compare(
    a: Annotated[str, typer.Argument(help="a flow run id (or unique prefix)")],
    b: Annotated[str, typer.Argument(help="another flow run id (or unique prefix)")],
    project: ProjectOption = Path("."),
) -> None:
    """Show what differs between two flow runs: parameters, data versions, code, metrics."""
    from ..flow.runs import compare_runs

    try:
        comparison = compare_runs(load_config(project), a, b)
    except FeaturepipeError as exc:
        raise _fail(exc, exit_code(exc)) from exc
    if not comparison.differences:
        console.print(f"runs {comparison.a.flow_run} and {comparison.b.flow_run}: no differences")
        return
    table = Table(title=f"{comparison.a.flow_run} vs {comparison.b.flow_run}", title_justify="left")
    for column in ("kind", "key", comparison.a.flow_run, comparison.b.flow_run):
        table.add_column(column, overflow="fold")
    for d in comparison.differences:
        table.add_row(d.kind, d.key, "-" if d.a is None else d.a, "-" if d.b is None else d.b)
    console.print(table)


@app.command()
def ui(
    project: ProjectOption = Path("."), host: HostOption = "127.0.0.1", port: PortOption = 5000
) -> None:
    """Start the MLflow UI on the project's tracking store."""
    config = _load(project)
    from ..flow.pending import log_pending

    try:
        log_pending(config)
    except FeaturepipeError as exc:
        raise _fail(exc, exit_code(exc)) from exc
    console.print(f"MLflow UI for {config.tracking_uri} at http://{host}:{port} (Ctrl-C stops it)")
    # One worker and no job runner: MLflow's defaults start 4 workers and ~7 job consumers
    # (for GenAI jobs featurepipe never submits), 15 processes that took the UI 39 s to come
    # up on 2 busy cores against 13 s like this.
    command = [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", config.tracking_uri,
        "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        **os.environ,
        "MLFLOW_TRACKING_URI": config.tracking_uri,
    }
    try:
        code = subprocess.call(command, cwd=config.project_dir, env=env)  # noqa: S603
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)
