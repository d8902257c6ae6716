"""`featurepipe promote` and `predict`: the registered model."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..config import load_config
from ..errors import (
    ConfigError,
    FeaturepipeError,
)
from .common import ProjectOption, _fail, app, console

if TYPE_CHECKING:
    pass


@app.command()
def promote(
    project: ProjectOption = Path("."),
    metric: Annotated[
        str | None, typer.Option(help="compare on this test metric (default: model.metric)")
    ] = None,
) -> None:
    """Move alias `champion` to the `candidate` version if every gate of its run passed and
    it beats the champion on the metric; otherwise say why not (exit code 3)."""
    from .. import registry, tracking

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
