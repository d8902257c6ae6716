"""Point-in-time correct features: each event sees only what was known at its event time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import polars as pl

from .errors import FeatureError

if TYPE_CHECKING:
    from .config import FeaturesConfig

__all__ = [
    "FeatureSet",
    "build_features",
    "describe_features",
    "feature_columns",
    "input_tables",
]

_CALENDAR = {
    "hour": lambda t: t.dt.hour(),
    "weekday": lambda t: t.dt.weekday(),
    "month": lambda t: t.dt.month(),
    "day": lambda t: t.dt.day(),
    "year": lambda t: t.dt.year(),
}


@dataclass(frozen=True)
class FeatureSet:
    """Features for a set of events.

    Attributes:
        frame: keys, event time, feature columns and (when built with one) the target.
        keys: columns identifying an event.
        event_time: the event-time column.
        categorical: text feature columns.
        numeric: numeric feature columns.
        target: target column name, or ``None`` when built for prediction.
        excluded: events dropped because their target is unknown (e.g. cancelled flights).
    """

    frame: pl.DataFrame
    keys: list[str]
    event_time: str
    categorical: list[str]
    numeric: list[str]
    target: str | None
    excluded: int

    @property
    def columns(self) -> list[str]:
        """All feature columns, categorical first."""
        return self.categorical + self.numeric


def _table(tables: Mapping[str, pl.LazyFrame | pl.DataFrame], name: str) -> pl.LazyFrame:
    try:
        return tables[name].lazy()
    except KeyError:
        raise FeatureError(
            f"features need table {name!r}, which was not given; tables: {sorted(tables)}"
        ) from None


def _renamed(columns: list[str], prefix: str) -> dict[str, str]:
    return {c: f"{prefix}{c}" for c in columns}


def build_features(
    tables: Mapping[str, pl.LazyFrame | pl.DataFrame],
    spec: FeaturesConfig,
    *,
    with_target: bool = True,
    start: datetime | None = None,
    end: datetime | None = None,
) -> FeatureSet:
    """Build the feature frame of ``spec.base`` events.

    Lookups join static attributes exactly on a key (many events to one entity).
    As-of joins take, per ``by`` key, the latest observation at or before the
    event time and no older than ``tolerance``: nothing from the future leaks in.

    Args:
        tables: table name to frame; must hold the base and every joined table.
        spec: the feature specification from ``featurepipe.toml``.
        with_target: compute the target and drop events whose target is unknown.
        start: keep events at or after this time.
        end: keep events before this time.

    Returns:
        The feature set, with the count of events excluded for an unknown target.

    Raises:
        FeatureError: a table or column is missing, or a lookup key is not unique.
    """
    event = spec.event_time
    base = _table(tables, spec.base)
    if start is not None:
        base = base.filter(pl.col(event) >= start)
    if end is not None:
        base = base.filter(pl.col(event) < end)
    local = pl.col(event).dt.convert_time_zone(spec.timezone)
    base = base.with_columns(_CALENDAR[part](local).alias(part) for part in spec.calendar)

    for lookup in spec.lookups:
        names = _renamed(lookup.columns, lookup.prefix)
        right = _table(tables, lookup.table).select(lookup.on, *lookup.columns).rename(names)
        base = base.join(right, on=lookup.on, how="left", validate="m:1")

    base = base.sort(event)
    for join in spec.as_of:
        names = _renamed(join.columns, join.prefix)
        right = (
            _table(tables, join.table)
            .select(join.by, pl.col(join.on).alias("_fp_as_of"), *join.columns)
            .rename(names)
            .sort("_fp_as_of")
        )
        base = base.join_asof(
            right,
            left_on=event,
            right_on="_fp_as_of",
            by=join.by,
            strategy="backward",
            tolerance=join.tolerance,
        ).drop("_fp_as_of")

    excluded = 0
    target: str | None = None
    selected = [*spec.keys, event, *feature_columns(spec)]
    if with_target:
        target = spec.target.name
        base = base.with_columns(
            (pl.col(spec.target.column) > spec.target.greater_than).cast(pl.Int8).alias(target),
            pl.col(spec.target.column).is_null().alias("_fp_unknown_target"),
        )
        selected += [target, "_fp_unknown_target"]
    try:
        frame = base.select(list(dict.fromkeys(selected))).collect()
    except pl.exceptions.ColumnNotFoundError as exc:
        raise FeatureError(f"features {spec.name!r}: column not found: {exc}") from exc
    except pl.exceptions.ComputeError as exc:
        raise FeatureError(f"features {spec.name!r}: {exc}") from exc
    if with_target:
        excluded = int(frame["_fp_unknown_target"].sum())
        frame = frame.filter(~pl.col("_fp_unknown_target")).drop("_fp_unknown_target")

    return describe_features(frame, spec, excluded=excluded, with_target=with_target)


def feature_columns(spec: FeaturesConfig) -> list[str]:
    """The names of the feature columns a spec produces, in order."""
    names = [*spec.calendar, *spec.columns]
    for lookup in spec.lookups:
        names += _renamed(lookup.columns, lookup.prefix).values()
    for join in spec.as_of:
        names += _renamed(join.columns, join.prefix).values()
    return list(dict.fromkeys(names))


def describe_features(
    frame: pl.DataFrame, spec: FeaturesConfig, *, excluded: int = 0, with_target: bool = True
) -> FeatureSet:
    """Wrap a feature frame (built now or read back from the warehouse) as a ``FeatureSet``.

    Raises:
        FeatureError: a feature column is missing, or is neither text nor a number.
    """
    features = feature_columns(spec)
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise FeatureError(
            f"features {spec.name!r}: columns {missing} missing from the feature table; "
            "rebuild it (notebooks/02_features)."
        )
    categorical = [c for c in features if frame.schema[c] in (pl.String, pl.Categorical)]
    numeric = [c for c in features if frame.schema[c].is_numeric()]
    other = set(features) - set(categorical) - set(numeric)
    if other:
        raise FeatureError(
            f"features {spec.name!r}: columns {sorted(other)} are neither text nor numbers; "
            "derive a number from them or drop them from the feature spec."
        )
    return FeatureSet(
        frame=frame,
        keys=list(spec.keys),
        event_time=spec.event_time,
        categorical=categorical,
        numeric=numeric,
        target=spec.target.name if with_target else None,
        excluded=excluded,
    )


def input_tables(spec: FeaturesConfig) -> list[str]:
    """The tables a feature spec reads: its base, then every joined table."""
    names = [spec.base, *(lk.table for lk in spec.lookups), *(j.table for j in spec.as_of)]
    return list(dict.fromkeys(names))
