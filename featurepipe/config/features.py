"""The point-in-time feature set: lookups, as-of joins, windows, functions and target."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .table import _Model


class Lookup(_Model):
    """Attributes of an entity joined exactly on a key (static, not time-dependent).

    By default the columns join the events as features. With ``into`` they join that
    table instead, before its derived columns, which may then use them (e.g. the time
    zone of a flight's destination, to place its arrival in time); they are not
    features themselves.
    """

    table: str
    on: str = Field(description="key column of the receiving table")
    key: str | None = Field(default=None, description="key column of `table`; default `on`")
    columns: list[str]
    prefix: str = ""
    into: str | None = Field(
        default=None, description="table that receives the columns; default: the events"
    )


class AsOfJoin(_Model):
    """Time-dependent attributes joined as of the event time: only the past is seen."""

    table: str
    on: str = Field(description="timestamp column of the joined table")
    by: str = Field(description="key column present in both tables")
    columns: list[str]
    tolerance: str = Field(default="3h", description="oldest observation to accept, e.g. '3h'")
    prefix: str = ""


class Window(_Model):
    """A per-entity rolling aggregate over the rows known strictly before each event.

    For an event at time ``at`` it aggregates ``value`` over the rows of ``table`` with
    the same ``by`` key whose ``known_at`` lies in ``[at - period, at)``.
    """

    name: str = Field(description="output column, e.g. 'origin_dep_delay_2h'")
    table: str = Field(description="the table of observations (may be the base table)")
    by: list[str] = Field(min_length=1, description="entity key, present in base and table")
    value: str = Field(description="column (or derived column) of `table` to aggregate")
    agg: Literal["mean", "sum", "count"] = "mean"
    period: str = Field(description="window length, e.g. '2h' or '30m'")
    known_at: str = Field(description="column of `table`: when a row's value became known")
    at: str | None = Field(default=None, description="column of the base: default event_time")

    @model_validator(mode="after")
    def _period(self) -> Window:
        if _duration(self.period) is None:
            raise ValueError(f"period {self.period!r}: use a duration like '90m', '2h' or '1d'")
        return self


def _duration(text: str) -> int | None:
    """A duration such as '90m', '2h', '1d' in seconds, or None."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) == 0:
        return None
    return int(number) * units[unit]


class FunctionFeature(_Model):
    """Escape hatch: ``module:function`` that takes and returns the events LazyFrame."""

    function: str = Field(pattern=r"^[\w.]+:\w+$", description="e.g. 'my_features:add_rush'")
    columns: list[str] = Field(min_length=1, description="feature columns the function adds")


class TargetConfig(_Model):
    """The target column.

    With ``greater_than`` it is binary (``column > greater_than``, a classification);
    without, it is ``column`` itself (a regression). Rows where ``column`` is null are
    excluded.
    """

    name: str
    column: str
    greater_than: float | None = None


class FeaturesConfig(_Model):
    """Point-in-time features built from the loaded tables."""

    name: str = "features"
    base: str = Field(description="the table with one row per event to predict")
    event_time: str = Field(description="the time at which a prediction is made")
    keys: list[str] = Field(default_factory=list, description="columns that identify an event")
    timezone: str = "UTC"
    calendar: list[Literal["hour", "weekday", "month", "day", "year"]] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=list, description="base columns used as features")
    derived: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="per table, columns computed from polars SQL expressions before joining",
    )
    lookups: list[Lookup] = Field(default_factory=list)
    as_of: list[AsOfJoin] = Field(default_factory=list)
    windows: list[Window] = Field(default_factory=list)
    functions: list[FunctionFeature] = Field(default_factory=list)
    target: TargetConfig
