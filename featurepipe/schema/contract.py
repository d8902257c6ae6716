"""Apply types to a raw frame; every value that does not fit goes to quarantine with a reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from .infer import DEFAULT_DATE_FORMAT, DEFAULT_DATETIME_FORMAT, infer_types, polars_type

__all__ = ["QUARANTINE_SCHEMA", "TypedTable", "apply_schema"]

ROW = "_fp_row"

QUARANTINE_SCHEMA = pl.Schema(
    {
        "table": pl.String(),
        "row": pl.Int64(),
        "column": pl.String(),
        "value": pl.String(),
        "reason": pl.String(),
    }
)

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


@dataclass(frozen=True)
class TypedTable:
    """A typed frame, the types chosen and the quarantined values.

    Attributes:
        table: table name.
        frame: rows whose every value fitted its type.
        types: column to logical type.
        quarantine: one row per value that did not fit (table, row, column, value, reason);
            ``row`` is the 1-based data row in the source (header excluded).
        rows_in: rows received.
    """

    table: str
    frame: pl.DataFrame
    types: dict[str, str]
    quarantine: pl.DataFrame
    rows_in: int

    @property
    def rows_quarantined(self) -> int:
        """Rows held back because at least one of their values did not fit."""
        return self.quarantine["row"].n_unique() if self.quarantine.height else 0


def _cast(column: str, logical: str, fmt: str | None) -> pl.Expr:
    value = pl.col(column).str.strip_chars()
    if logical == "text":
        return pl.col(column)
    if logical == "bool":
        lower = value.str.to_lowercase()
        return (
            pl.when(lower.is_in(_TRUE))
            .then(True)
            .when(lower.is_in(_FALSE))
            .then(False)
            .otherwise(None)
        )
    if logical == "date":
        return value.str.to_date(fmt or DEFAULT_DATE_FORMAT, strict=False)
    if logical == "datetime":
        return value.str.to_datetime(
            fmt or DEFAULT_DATETIME_FORMAT, strict=False, time_unit="us", time_zone="UTC"
        )
    return value.cast(polars_type(logical), strict=False)


def apply_schema(
    table: str,
    frame: pl.DataFrame,
    hints: Mapping[str, Any] | None = None,
    null_values: Sequence[str] = (),
) -> TypedTable:
    """Type a raw frame: null tokens become nulls, hinted columns get their declared
    type, the others an inferred one; rows with a value that does not fit are moved
    to quarantine, never silently nulled.

    Args:
        table: the table name, recorded in the quarantine.
        frame: raw frame, text columns as read from the source.
        hints: column name to a hint with ``type`` and optional ``format``.
        null_values: tokens that mean "no value" in text columns.

    Returns:
        The typed table with its quarantine.
    """
    hints = dict(hints or {})
    text = [c for c, dtype in frame.schema.items() if dtype == pl.String]
    raw = frame.with_columns(
        pl.when(pl.col(c).is_in(list(null_values))).then(None).otherwise(pl.col(c)).alias(c)
        for c in text
    ).with_row_index(ROW, offset=1)
    inferred = infer_types(raw, [c for c in frame.columns if c not in hints])
    types = {c: hints[c].type if c in hints else inferred[c] for c in frame.columns}
    casts = {
        c: _cast(c, types[c], getattr(hints.get(c), "format", None))
        for c in text
        if types[c] != "text"
    }
    typed = raw.with_columns(expr.alias(c) for c, expr in casts.items())
    failed = {c: raw[c].is_not_null() & typed[c].is_null() for c in casts}
    quarantine = (
        pl.concat(
            [
                raw.filter(mask).select(
                    pl.lit(table).alias("table"),
                    pl.col(ROW).cast(pl.Int64).alias("row"),
                    pl.lit(c).alias("column"),
                    pl.col(c).alias("value"),
                    pl.lit(_reason(types[c], getattr(hints.get(c), "format", None))).alias(
                        "reason"
                    ),
                )
                for c, mask in failed.items()
                if mask.any()
            ],
            how="vertical",
        )
        if any(mask.any() for mask in failed.values())
        else QUARANTINE_SCHEMA.to_frame()
    )
    bad_rows = quarantine["row"].unique()
    kept = typed.filter(~pl.col(ROW).is_in(bad_rows.implode())).drop(ROW)
    return TypedTable(
        table=table,
        frame=kept,
        types=types,
        quarantine=quarantine.sort("row", "column"),
        rows_in=frame.height,
    )


def _reason(logical: str, fmt: str | None) -> str:
    expected = {
        "int": "an integer",
        "float": "a number",
        "bool": "a boolean (true/false, yes/no, y/n, t/f, 1/0)",
        "date": f"a date in format {fmt or DEFAULT_DATE_FORMAT}",
        "datetime": f"a datetime in format {fmt or DEFAULT_DATETIME_FORMAT}",
    }[logical]
    return f"not {expected}"
