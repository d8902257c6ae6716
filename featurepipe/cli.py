"""The ``featurepipe`` command: parse arguments, call the API, print with rich."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from . import __version__
from .config import load_config, table_options
from .errors import ConfigError, FeaturepipeError, StepFailed

if TYPE_CHECKING:
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


def _fail(exc: FeaturepipeError, code: int) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


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
) -> None:
    """Run the notebook flow (ingest, features, train, predict) and print a summary."""
    from .flow import run_flow

    try:
        config = load_config(project)
        parameters = _parse_parameters(param or [])

        def show(result: StepResult) -> None:
            if result.status == "running":
                console.print(f"[cyan]▶[/] {result.name} …")
            else:
                mark = "[green]✔[/]" if result.status == "finished" else "[red]✘[/]"
                console.print(f"{mark} {result.name} {result.status} in {result.seconds:.1f}s")

        with console.status("running the flow"):
            flow = run_flow(config, parameters=parameters, steps=step, on_step=show)
    except ConfigError as exc:
        raise _fail(exc, 2) from exc
    except StepFailed as exc:
        raise _fail(exc, 1) from exc
    except FeaturepipeError as exc:
        raise _fail(exc, 1) from exc
    _print_summary(flow, project)


def _print_summary(flow: FlowResult, project: Path) -> None:
    steps = Table(title=f"flow {flow.run_id}", title_justify="left")
    for column in ("step", "status", "seconds"):
        steps.add_column(column)
    steps.add_column("executed notebook", overflow="fold")
    for s in flow.steps:
        steps.add_row(s.name, s.status, f"{s.seconds:.1f}", str(s.notebook))
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
    console.print(
        f"\nMLflow run [bold]{flow.mlflow_run_id}[/] (experiment {flow.experiment_id}) "
        f"in {flow.tracking_uri}\n"
        f"Open the MLflow UI: [bold]featurepipe ui --project {project}[/] then "
        f"http://127.0.0.1:5000/#/experiments/{flow.experiment_id}/runs/{flow.mlflow_run_id}"
    )


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@app.command()
def ui(
    project: ProjectOption = Path("."),
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 5000,
) -> None:
    """Start the MLflow UI on the project's tracking store."""
    try:
        config = load_config(project)
    except ConfigError as exc:
        raise _fail(exc, 2) from exc
    console.print(f"MLflow UI for {config.tracking_uri} at http://{host}:{port} (Ctrl-C stops it)")
    command = [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", config.tracking_uri,
        "--host", host, "--port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": config.tracking_uri}
    try:
        code = subprocess.call(command, cwd=config.project_dir, env=env)  # noqa: S603
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


@app.command()
def connectors(
    kind: Annotated[str | None, typer.Argument(help="show only this kind, e.g. sql")] = None,
) -> None:
    """List the pull connectors, their release stage and their options."""
    from .connectors import CONNECTORS

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
        fields = connector.options.model_fields
        shared = [f for f in fields if f in table_options()]  # listed last
        for option in [*(f for f in fields if f not in shared), *shared]:
            field = fields[option]
            default = "(required)" if field.is_required() else _fmt_default(field)
            options.add_row(option, _fmt_type(field.annotation), default, field.description or "")
        console.print(options)


def _fmt_type(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " | ".join(str(a) for a in get_args(annotation))
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    text = str(annotation).replace("typing.", "")
    return re.sub(r"Annotated\[(\w+), [^\]]*\]", r"\1", text)  # hints: their model's name


def _fmt_default(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    return (
        "" if value is None else repr(value.model_dump() if hasattr(value, "model_dump") else value)
    )


def main() -> None:
    """Entry point of the ``featurepipe`` console script."""
    app()
