"""The ``featurepipe`` command: parse arguments, call the API, print with rich."""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from . import __version__
from .config import load_config
from .errors import (
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
    from .config import Config
    from .flow import FlowResult, StepResult

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

    from .flow import run_flow

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
    from .flow import explain_flow

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
        extra = {k: v for k, v in summary.items() if k != "tables"}
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


def _fmt(value: Any) -> str:
    """Four decimals for a measure; a count (MLflow keeps every metric as a float) as a count."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4f}"
    return str(value)


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
    from .flow.runs import KEY_METRICS, list_runs

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
    from .flow.runs import compare_runs

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
    from .flow.pending import log_pending

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


@app.command()
def schema(
    source: Annotated[str, typer.Argument(help="the source's name in featurepipe.toml")],
    project: ProjectOption = Path("."),
    rows: Annotated[
        int, typer.Option("--rows", "-n", help="look at the first N rows only (0: all)")
    ] = 0,
) -> None:
    """Print a source's columns: inferred type, null share, examples and misfits."""
    from .connectors import extract_source
    from .schema import profile_table

    try:
        config = load_config(project)
        if source not in config.sources:
            raise ConfigError(
                f"no source {source!r} in {config.project_dir / 'featurepipe.toml'}; "
                f"sources are: {', '.join(config.sources)}"
            )
        settings = config.sources[source]
        frame = extract_source(source, settings).collect()
        if rows:
            frame = frame.head(rows)
        profile = profile_table(source, frame, **settings.typing_options())
    except ConfigError as exc:
        raise _fail(exc, 2) from exc
    except FeaturepipeError as exc:
        raise _fail(exc, 1) from exc
    table = Table(title=f"{source}: {frame.height} rows", title_justify="left")
    for column in ("column", "type", "nulls", "examples", "misfits", "note"):
        table.add_column(column, overflow="fold")
    for row in profile.iter_rows(named=True):
        name = row["column"] + (f" → {row['name']}" if row["name"] != row["column"] else "")
        table.add_row(
            name,
            row["type"],
            f"{row['null_share']:.1%}",
            row["examples"],
            row["misfits"],
            row["note"],
        )
    console.print(table)


@app.command()
def serve(
    project: ProjectOption = Path("."), host: HostOption = "127.0.0.1", port: PortOption = 8787
) -> None:
    """Receive the push sources' signed webhooks at POST /hooks/SOURCE until SIGTERM or Ctrl-C.

    Each event is committed to the source's queue before it is answered, and flushed to
    its bucket as NDJSON batches; a stop finishes requests in flight and flushes first.
    """
    from .config import PushSourceConfig
    from .connectors.push import build_receiver, run_receiver

    try:
        config = load_config(project)
        sources = {n: s for n, s in config.sources.items() if isinstance(s, PushSourceConfig)}
        receiver = build_receiver(sources)
    except ConfigError as exc:
        raise _fail(exc, 2) from exc
    except FeaturepipeError as exc:
        raise _fail(exc, 1) from exc
    for name in sources:
        errors.print(f"receiving [bold]{name}[/] at http://{host}:{port}/hooks/{name}")
    try:
        run_receiver(receiver, host=host, port=port)
    except FeaturepipeError as exc:
        raise _fail(exc, 1) from exc


@app.command()
def connectors(
    kind: Annotated[str | None, typer.Argument(help="show only this kind, e.g. sql")] = None,
) -> None:
    """List the pull connectors, their release stage and their options."""
    from .connectors import CONNECTORS
    from .connectors.options import option_rows

    if kind is not None and kind not in CONNECTORS:
        raise _fail(ConfigError(f"no connector {kind!r}; kinds are {', '.join(CONNECTORS)}"), 2)
    for name, connector in CONNECTORS.items():
        if kind is not None and name != kind:
            continue
        options = Table(
            title=escape(f'kind = "{name}" · {connector.stage} · {connector.summary}'),
            title_justify="left",
        )
        for column in ("option", "type", "default", "description"):
            options.add_column(column, overflow="fold")
        for row in option_rows(connector.options):
            options.add_row(
                *(escape(v) for v in (row.name, row.type, row.default, row.description))
            )
        console.print(options)


# ---- models: promote and predict (issue 7) --------------------------------------------


@app.command()
def promote(
    project: ProjectOption = Path("."),
    metric: Annotated[
        str | None, typer.Option(help="compare on this test metric (default: model.metric)")
    ] = None,
) -> None:
    """Move alias `champion` to the `candidate` version if every gate of its run passed and
    it beats the champion on the metric; otherwise say why not (exit code 3)."""
    from . import registry, tracking

    try:
        config = load_config(project)
        tracking.configure(config.tracking_uri, config.tracking.experiment, config.path("mlruns"))
        result = registry.promote(
            config.model.name,
            metric=metric or config.model.metric,
            candidate=config.model.alias,
            champion=config.model.champion_alias,
        )
    except ConfigError as exc:
        raise _fail(exc, 2) from exc
    except FeaturepipeError as exc:
        raise _fail(exc, 1) from exc
    mark = "[green]promoted[/]" if result.promoted else "[yellow]not promoted[/]"
    console.print(f"{config.model.name}: {mark}: {result.reason}", highlight=False)
    if not result.promoted:
        raise typer.Exit(3)


@app.command()
def predict(
    project: ProjectOption = Path("."),
    alias: Annotated[str | None, typer.Option(help="model alias (default: predict.alias)")] = None,
    version: Annotated[int | None, typer.Option(help="an exact registered version")] = None,
    start: Annotated[
        datetime | None, typer.Option(help="score events from (default: predict.start)")
    ] = None,
    end: Annotated[datetime | None, typer.Option(help="score events before this time")] = None,
    table: Annotated[str | None, typer.Option(help="output table (default: predict.table)")] = None,
) -> None:
    """Score events with a registered model, computing features with the training code."""
    import featurepipe as fp

    try:
        config = load_config(project)
        fp.tracking.configure(
            config.tracking_uri, config.tracking.experiment, config.path("mlruns")
        )
        model = fp.registry.load_registered_model(
            config.model.name, alias=alias or config.predict.alias, version=version
        )
        warehouse = fp.open_warehouse(config)
        inputs = {name: warehouse.read(name)[0] for name in fp.input_tables(config.features)}
        features = fp.build_features(
            inputs,
            config.features,
            with_target=False,
            start=_aware(start) or config.predict.start,
            end=_aware(end) or config.predict.end,
        )
        scores = fp.predict_frame(
            model.pipeline,
            features,
            threshold=config.predict.threshold,
            model=model.name,
            model_version=model.version,
        )
        load_id = fp.new_run_id()
        load = warehouse.write(
            table or config.predict.table, scores, load_id=load_id, mode="replace"
        )
    except ConfigError as exc:
        raise _fail(exc, 2) from exc
    except FeaturepipeError as exc:
        raise _fail(exc, 1) from exc
    console.print(
        f"scored {scores.height} events with {model.name} v{model.version} into "
        f"{load.table!r} (version {load.version}, load id {load_id})",
        highlight=False,
    )


def _aware(moment: datetime | None) -> datetime | None:
    """Command-line times without an offset are taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def main() -> None:
    """Entry point of the ``featurepipe`` console script."""
    app()
