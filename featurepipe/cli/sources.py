"""`featurepipe schema`, `serve` and `connectors`: sources and what they hold."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..config import load_config
from ..errors import (
    ConfigError,
    FeaturepipeError,
)
from .common import HostOption, PortOption, ProjectOption, _fail, app, console, errors

if TYPE_CHECKING:
    pass


@app.command()
def schema(
    source: Annotated[str, typer.Argument(help="the source's name in featurepipe.toml")],
    project: ProjectOption = Path("."),
    rows: Annotated[
        int, typer.Option("--rows", "-n", help="look at the first N rows only (0: all)")
    ] = 0,
) -> None:
    """Print a source's columns: inferred type, null share, examples and misfits."""
    from ..connectors import extract_source
    from ..schema import profile_table

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
    from ..config import PushSourceConfig
    from ..connectors.push import build_receiver, run_receiver

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
    from ..connectors import CONNECTORS
    from ..connectors.options import option_rows

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
