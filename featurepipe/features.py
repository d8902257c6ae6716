"""Point-in-time correct features: each event sees only what was known at its event time."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import polars as pl

from .errors import FeatureError

if TYPE_CHECKING:
    import pandas as pd

    from .config import FeaturesConfig, FunctionFeature, Lookup, Window

__all__ = [
    "FeatureSet",
    "build_features",
    "describe_features",
    "feature_columns",
    "frame_digest",
    "model_inputs",
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
        boolean: true/false feature columns.
    """

    frame: pl.DataFrame
    keys: list[str]
    event_time: str
    categorical: list[str]
    numeric: list[str]
    target: str | None
    excluded: int
    boolean: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """All feature columns: categorical, numeric, then boolean."""
        return self.categorical + self.numeric + self.boolean


def _table(tables: Mapping[str, pl.LazyFrame | pl.DataFrame], name: str) -> pl.LazyFrame:
    try:
        return tables[name].lazy()
    except KeyError:
        raise FeatureError(
            f"features need table {name!r}, which was not given; tables: {sorted(tables)}"
        ) from None


def _renamed(columns: list[str], prefix: str) -> dict[str, str]:
    return {c: f"{prefix}{c}" for c in columns}


def _join_lookup(left: pl.LazyFrame, right: pl.LazyFrame, lookup: Lookup) -> pl.LazyFrame:
    """Left-join ``lookup.columns`` of ``right`` on its key (many rows to one entity).

    The right key takes the left key's type, so text and categorical keys match.
    """
    key = lookup.key or lookup.on
    kind = left.collect_schema().get(lookup.on)
    names = _renamed(lookup.columns, lookup.prefix)
    right = right.select(pl.col(key).alias("_fp_key"), *lookup.columns).rename(names)
    if kind is not None:
        right = right.with_columns(pl.col("_fp_key").cast(kind))
    return left.join(
        right,
        left_on=lookup.on,
        right_on="_fp_key",
        how="left",
        validate="m:1",
        maintain_order="left",
    )


def _derive(
    tables: Mapping[str, pl.LazyFrame | pl.DataFrame], spec: FeaturesConfig
) -> dict[str, pl.LazyFrame]:
    """Every table the spec reads, with its ``into`` lookups, then its derived columns
    (polars SQL), added."""
    read = input_tables(spec)
    unknown = sorted(set(spec.derived) - set(read))
    if unknown:
        raise FeatureError(
            f"features {spec.name!r}: `derived` names table(s) {unknown} that no feature reads; "
            f"tables read: {read}"
        )
    frames: dict[str, pl.LazyFrame] = {}
    pending: list[str] = []

    def prepare(name: str) -> pl.LazyFrame:
        if name in frames:
            return frames[name]
        if name in pending:
            raise FeatureError(
                f"features {spec.name!r}: lookups `into` form a cycle: {[*pending, name]}"
            )
        pending.append(name)
        frame = _table(tables, name)
        for lookup in spec.lookups:
            if lookup.into == name:
                frame = _join_lookup(frame, prepare(lookup.table), lookup)
        for column, sql in spec.derived.get(name, {}).items():
            try:
                expression = pl.sql_expr(sql)
            except (pl.exceptions.PolarsError, ValueError) as exc:
                raise FeatureError(
                    f"features {spec.name!r}: derived.{name}.{column} = {sql!r} is not a polars "
                    f"SQL expression: {exc}"
                ) from exc
            frame = frame.with_columns(expression.alias(column))
        pending.remove(name)
        frames[name] = frame
        return frame

    for name in read:
        prepare(name)
    return frames


def build_features(
    tables: Mapping[str, pl.LazyFrame | pl.DataFrame],
    spec: FeaturesConfig,
    *,
    with_target: bool = True,
    start: datetime | None = None,
    end: datetime | None = None,
) -> FeatureSet:
    """Build the feature frame of ``spec.base`` events.

    Derived columns are computed per table first. Lookups join static attributes
    exactly on a key (many events to one entity). As-of joins take, per ``by`` key,
    the latest observation at or before the event time and no older than
    ``tolerance``. Windows aggregate, per entity, only the rows known strictly before
    the event. Nothing from the future leaks in. ``start`` and ``end`` choose the
    events; windows still see every earlier row, so training and prediction compute
    the same values for the same event.

    Args:
        tables: table name to frame; must hold the base and every joined table.
        spec: the feature specification from ``featurepipe.toml``.
        with_target: compute the target and drop events whose target is unknown.
        start: keep events at or after this time.
        end: keep events before this time.

    Returns:
        The feature set, sorted by event time then keys, with the count of events
        excluded for an unknown target.

    Raises:
        FeatureError: a table or column is missing, or a lookup key is not unique.
    """
    event = spec.event_time
    frames = _derive(tables, spec)
    base = frames[spec.base]
    if start is not None:
        base = base.filter(pl.col(event) >= start)
    if end is not None:
        base = base.filter(pl.col(event) < end)
    local = pl.col(event).dt.convert_time_zone(spec.timezone)
    base = base.with_columns(_CALENDAR[part](local).alias(part) for part in spec.calendar)

    for lookup in spec.lookups:
        if lookup.into is None:
            base = _join_lookup(base, frames[lookup.table], lookup)

    base = base.sort(event)
    for join in spec.as_of:
        names = _renamed(join.columns, join.prefix)
        right = (
            frames[join.table]
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
            check_sortedness=False,  # both sides are sorted just above
        ).drop("_fp_as_of")

    for window in spec.windows:
        base = _add_window(base, frames[window.table], window, spec)
    for hook in spec.functions:
        base = _apply_function(base, hook, spec)

    target: str | None = None
    selected = [*spec.keys, event, *feature_columns(spec)]
    if with_target:
        target = spec.target.name
        value = pl.col(spec.target.column)
        if spec.target.greater_than is not None:
            value = (value > spec.target.greater_than).cast(pl.Int8)
        base = base.with_columns(
            value.alias(target), pl.col(spec.target.column).is_null().alias("_fp_unknown_target")
        )
        selected += [target, "_fp_unknown_target"]
    order = list(dict.fromkeys([event, *spec.keys]))
    try:
        frame = (
            base.select(list(dict.fromkeys(selected)))
            .sort(order, maintain_order=True, nulls_last=True)
            .collect()
        )
    except pl.exceptions.ColumnNotFoundError as exc:
        raise FeatureError(f"features {spec.name!r}: column not found: {exc}") from exc
    except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError) as exc:
        raise FeatureError(f"features {spec.name!r}: {exc}") from exc
    excluded = 0
    if with_target:
        excluded = int(frame["_fp_unknown_target"].sum())
        frame = frame.filter(~pl.col("_fp_unknown_target")).drop("_fp_unknown_target")

    return describe_features(frame, spec, excluded=excluded, with_target=with_target)


def _add_window(
    base: pl.LazyFrame, observations: pl.LazyFrame, window: Window, spec: FeaturesConfig
) -> pl.LazyFrame:
    """Add one rolling window: ``agg(value)`` over rows with ``known_at`` in ``[at - period, at)``.

    Running sums per entity are joined as of the window's end and start, each taking
    only rows known *strictly* before that instant; their difference is the window.
    An event that is itself a row of the observed table never counts itself.
    """
    at = window.at or spec.event_time
    by, known = window.by, window.known_at
    running = (
        observations.select(
            *by,
            pl.col(known).alias("_fp_known"),
            pl.col(window.value).cast(pl.Float64).alias("_fp_v"),
        )
        .filter(pl.col("_fp_known").is_not_null() & pl.col("_fp_v").is_not_null())
        .group_by([*by, "_fp_known"])
        .agg(pl.col("_fp_v").sum().alias("_fp_s"), pl.len().cast(pl.Float64).alias("_fp_n"))
        .sort([*by, "_fp_known"])
        .with_columns(
            pl.col("_fp_s").cum_sum().over(by).alias("_fp_s"),
            pl.col("_fp_n").cum_sum().over(by).alias("_fp_n"),
        )
        .sort("_fp_known")
    )
    offset = f"-{window.period}"
    base = base.with_columns(pl.col(at).dt.offset_by(offset).alias("_fp_from")).sort(at)
    for edge, left in (("end", at), ("start", "_fp_from")):
        base = (
            base.sort(left)
            .join_asof(
                running.rename({"_fp_s": f"_fp_s_{edge}", "_fp_n": f"_fp_n_{edge}"}),
                left_on=left,
                right_on="_fp_known",
                by=by,
                strategy="backward",
                allow_exact_matches=False,
                check_sortedness=False,  # both sides are sorted just above
            )
            .drop("_fp_known")
        )
    total = pl.col("_fp_s_end").fill_null(0) - pl.col("_fp_s_start").fill_null(0)
    count = pl.col("_fp_n_end").fill_null(0) - pl.col("_fp_n_start").fill_null(0)
    if window.table == spec.base:  # the event's own row is not evidence about itself
        own = (
            pl.col(known).is_not_null()
            & pl.col(window.value).is_not_null()
            & (pl.col(known) < pl.col(at))
            & (pl.col(known) >= pl.col("_fp_from"))
        )
        total = total - pl.when(own).then(pl.col(window.value).cast(pl.Float64)).otherwise(0.0)
        count = count - own.cast(pl.Float64)
    result = {
        "mean": pl.when(count > 0).then(total / count),
        "sum": total,
        "count": count.cast(pl.Int64),
    }[window.agg]
    return base.with_columns(result.alias(window.name)).drop(
        "_fp_from", "_fp_s_end", "_fp_n_end", "_fp_s_start", "_fp_n_start"
    )


def _apply_function(
    base: pl.LazyFrame, hook: FunctionFeature, spec: FeaturesConfig
) -> pl.LazyFrame:
    """Call a user's ``module:function`` on the events; it must return a LazyFrame."""
    module_name, _, name = hook.function.partition(":")
    try:
        function: Callable[[pl.LazyFrame], pl.LazyFrame] = getattr(
            importlib.import_module(module_name), name
        )
    except (ImportError, AttributeError) as exc:
        raise FeatureError(
            f"features {spec.name!r}: cannot import feature function {hook.function!r}: {exc}; "
            "make the module importable from the project folder (or install it)."
        ) from exc
    result = function(base)
    if not isinstance(result, pl.LazyFrame):
        raise FeatureError(
            f"features {spec.name!r}: {hook.function} returned {type(result).__name__}, "
            "not a polars LazyFrame"
        )
    return result


def feature_columns(spec: FeaturesConfig) -> list[str]:
    """The names of the feature columns a spec produces, in order."""
    names = [*spec.calendar, *spec.columns]
    for lookup in spec.lookups:
        if lookup.into is None:
            names += _renamed(lookup.columns, lookup.prefix).values()
    for join in spec.as_of:
        names += _renamed(join.columns, join.prefix).values()
    names += [w.name for w in spec.windows]
    for hook in spec.functions:
        names += hook.columns
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
    boolean = [c for c in features if frame.schema[c] == pl.Boolean]
    other = set(features) - set(categorical) - set(numeric) - set(boolean)
    if other:
        raise FeatureError(
            f"features {spec.name!r}: columns {sorted(other)} are neither text, numbers nor "
            "booleans; derive a number from them or drop them from the feature spec."
        )
    return FeatureSet(
        frame=frame,
        keys=list(spec.keys),
        event_time=spec.event_time,
        categorical=categorical,
        numeric=numeric,
        target=spec.target.name if with_target else None,
        excluded=excluded,
        boolean=boolean,
    )


def input_tables(spec: FeaturesConfig) -> list[str]:
    """The tables a feature spec reads: its base, then every joined table."""
    names = [
        spec.base,
        *(lk.into for lk in spec.lookups if lk.into),
        *(lk.table for lk in spec.lookups),
        *(j.table for j in spec.as_of),
        *(w.table for w in spec.windows),
    ]
    return list(dict.fromkeys(names))


def frame_digest(frame: pl.DataFrame) -> str:
    """A content digest of a frame (its schema and every row, in order): 16 hex digits.

    Identical feature tables give identical digests, so a model's metadata names the
    exact training data; row hashes come from polars with a fixed seed.
    """
    digest = hashlib.sha256(str(frame.schema).encode())
    digest.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def model_inputs(frame: pl.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The pipeline's input: ``columns`` of ``frame`` as pandas, in types that never vary.

    Text (and categorical) columns become strings; numbers and booleans (as 0/1) become
    float64. Otherwise an integer column would reach pandas as ``int`` in rows without a
    null and as ``float64`` in rows with one, so the model's signature, inferred from a few
    training rows, would reject prediction rows that hold a null.
    """

    def typed(column: str) -> pl.Expr:
        kind = frame.schema[column]
        if kind in (pl.String, pl.Categorical):
            return pl.col(column).cast(pl.String)
        return pl.col(column).cast(pl.Float64)

    return frame.select(typed(c) for c in columns).to_pandas()
