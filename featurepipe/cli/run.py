"""`featurepipe run`: the notebook flow with live progress, a dry run and the summary."""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ..config import load_config
from ..errors import FeaturepipeError
from .common import (
    ProjectOption,
    _fail,
    _fmt,
    _parse_parameters,
    _parse_thresholds,
    app,
    console,
    exit_code,
)

if TYPE_CHECKING:
    from ..config import Config
    from ..flow import FlowResult, StepResult


class _LiveSteps:
    """The live progress table of a flow run: one row per step, timing the running one."""

    def __init__(self) -> None:
        self.steps: dict[str, StepResult] = {}

    def update(self, result: StepResult) -> None:
        self.steps[result.name] = result

    def __rich__(self) -> Table:
        table = Table(box=None, show_header=False, pad_edge=False)
        marks = {"running": "[cyan]▶[/]", "finished": "[green]✔[/]", "failed": "[red]✘[/]"}
        for s in self.steps.values():
            seconds = time.monotonic() - s.started if s.status == "running" else s.seconds
            if s.status == "up to date":
                text = f"[dim]up to date, reuses run {s.reused_run}[/]"
                table.add_row("[green]=[/]", s.name, text)
            else:
                table.add_row(marks.get(s.status, " "), s.name, f"{s.status} {seconds:.1f}s")
        return table


@app.command()
def run(
    project: ProjectOption = Path("."),
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="notebook parameter KEY=VALUE (JSON values)"),
    ] = None,
    step: Annotated[
        list[str] | None, typer.Option("--step", "-s", help="run only this notebook (repeatable)")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--from", help="rerun this step (even if up to date) and what follows it"),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="stop after this step (and its upstream)")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="run every step, even those up to date")
    ] = False,
    fail_under: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-under",
            help="exit 6 unless the flow's METRIC >= NUMBER, e.g. test_roc_auc=0.65; for a "
            "loss or error (a name ending in loss, brier, rmse, mse, mae, error): <= NUMBER",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show which steps would run and why; run nothing")
    ] = False,
) -> None:
    """Run the notebook flow, skipping steps that are up to date, and print a summary.

    Exit codes: 0 success, 1 a cell failed, 2 configuration or usage error, 3 a
    validation gate failed, 4 a step timed out, 5 a kernel died, 6 a metric is below
    --fail-under.
    """
    from rich.live import Live

    from ..flow import run_flow

    live_steps = _LiveSteps()
    try:
        config = load_config(project)
        parameters = _parse_parameters(param or [])
        thresholds = _parse_thresholds(fail_under or [])
        if dry_run:
            _explain(config, parameters, step, start, end, force)
            return
        with Live(live_steps, console=console, refresh_per_second=4, transient=False) as live:

            def show(result: StepResult) -> None:
                live_steps.update(result)
                live.refresh()

            flow = run_flow(
                config,
                parameters=parameters,
                steps=step,
                start=start,
                end=end,
                force=force,
                fail_under=thresholds,
                command=shlex.join(["featurepipe", *sys.argv[1:]]),
                on_step=show,
            )
    except FeaturepipeError as exc:
        if not console.is_terminal:
            console.line()  # a live display that is not a terminal ends without a newline
        raise _fail(exc, exit_code(exc)) from exc
    if not console.is_terminal:
        console.line()
    _print_summary(flow, project)


def _explain(
    config: Config,
    parameters: dict[str, Any],
    steps: list[str] | None,
    start: str | None,
    end: str | None,
    force: bool,
) -> None:
    from ..flow import explain_flow

    decisions = explain_flow(
        config, parameters=parameters, steps=steps, start=start, end=end, force=force
    )
    table = Table(title="dry run: nothing was run", title_justify="left")
    for column in ("step", "would", "why"):
        table.add_column(column, overflow="fold")
    for d in decisions:
        if d.entry is None:
            table.add_row(d.step, "[cyan]run[/]", d.reason)
        else:
            table.add_row(d.step, "[green]reuse[/]", f"up to date, run {d.entry.run_id}")
    console.print(table)


def _print_summary(flow: FlowResult, project: Path) -> None:
    steps = Table(title=f"flow {flow.run_id}", title_justify="left")
    for column in ("step", "status", "seconds"):
        steps.add_column(column)
    steps.add_column("executed notebook", overflow="fold")
    for s in flow.steps:
        status = s.status if not s.reused_run else f"up to date (run {s.reused_run})"
        steps.add_row(s.name, status, f"{s.seconds:.1f}", str(s.notebook))
    console.print(steps)

    by_name = {s.name: s.summary for s in flow.steps}
    tables = by_name.get("01_ingest", {}).get("tables", [])
    if tables:
        t = Table(title="tables", title_justify="left")
        columns = list(tables[0])
        for column in columns:
            t.add_column(column, justify="right" if column != "table" else "left")
        for row in tables:
            t.add_row(*(str(row[c]) for c in columns))
        console.print(t)
    for name, summary in by_name.items():
        # scalars only: lists such as 01_ingest's lineage stay in the summary file and MLflow
        extra = {k: v for k, v in summary.items() if not isinstance(v, list | dict)}
        if extra:
            console.print(
                f"[bold]{name}[/]: " + ", ".join(f"{k}={_fmt(v)}" for k, v in extra.items())
            )
    if flow.pending is not None:
        console.print(
            f"\nEvery step was up to date. The run record waits in {flow.pending}; the next "
            "`featurepipe run` that runs a step, `featurepipe runs` or `featurepipe ui` "
            "logs it to MLflow.",
            highlight=False,
        )
        return
    console.print(
        f"\nMLflow run [bold]{flow.mlflow_run_id}[/] (experiment {flow.experiment_id}) "
        f"in {flow.tracking_uri}\n"
        f"Open the MLflow UI: [bold]{_ui_command(project)}[/] then "
        f"http://127.0.0.1:5000/#/experiments/{flow.experiment_id}/runs/{flow.mlflow_run_id}"
        # MLflow 3 opens in its GenAI view, which hides runs and models without this
        "?workflowType=machine_learning",
        highlight=False,
    )


def _ui_command(project: Path) -> str:
    """The `featurepipe ui` command a user can type here: `make run` runs .venv/bin/featurepipe,
    which is on no PATH unless the environment is activated."""
    script = Path(sys.executable).parent / "featurepipe"
    program = "featurepipe"
    if script.is_file() and shutil.which("featurepipe") != str(script):
        try:
            program = str(script.relative_to(Path.cwd()))
        except ValueError:
            program = str(script)
    return program + " ui" + ("" if project == Path(".") else f" --project {project}")
