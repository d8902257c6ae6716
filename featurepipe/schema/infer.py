"""Infer a column's logical type from its raw text values, never losing what a value says.

Rules (a column gets the first type that holds *every* non-null value exactly):

1. ``int``: optional minus sign and digits, no leading zeros (``007`` stays text,
   because an integer would drop the zeros), within the 64-bit range.
2. ``float``: decimal or scientific notation (``1.5``, ``-.5``, ``1e3``), no leading
   zeros before the point (``007.5`` stays text), finite, and reading back as written:
   the 64-bit float it parses to, printed with as many significant digits as the value
   has, must give the value back. Up to 15 digits always do; longer values are checked
   (``48.053808600000004``, a float printed by R, does; ``0.12345678901234567`` and a
   20-digit account number do not and keep the column text).
3. ``datetime``: ISO 8601 with a UTC offset or ``Z`` (``2013-01-01T10:00:00Z``);
   normalized to UTC, which keeps the instant.
4. ``text``: everything else, and columns with no value at all.

Null tokens (``""``, ``NA`` …) are removed before inference. Surrounding
whitespace is ignored for numbers and datetimes.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import polars as pl

__all__ = ["DEFAULT_DATETIME_FORMAT", "LOGICAL_TYPES", "infer_types", "polars_type"]

DEFAULT_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%#z"
DEFAULT_DATE_FORMAT = "%Y-%m-%d"

LOGICAL_TYPES: dict[str, pl.DataType] = {
    "bool": pl.Boolean(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "text": pl.String(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us", "UTC"),
}

_FLOAT_DIGITS = 15

_PATTERNS = {
    "int": r"^-?(0|[1-9][0-9]{0,18})$",
    "float": r"^-?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$",
    "datetime": r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$",
}


def polars_type(logical: str) -> pl.DataType:
    """The polars dtype that stores a logical type."""
    return LOGICAL_TYPES[logical]


def infer_types(frame: pl.DataFrame, columns: Iterable[str] | None = None) -> dict[str, str]:
    """Infer the logical type of text columns in one pass over the data.

    Args:
        frame: raw frame; null tokens must already be nulls.
        columns: the columns to infer (default: every ``String`` column).

    Returns:
        Column name to logical type (``int``, ``float``, ``datetime`` or ``text``).
        Columns that are not text keep the logical type of their dtype.
    """
    names = list(columns) if columns is not None else frame.columns
    text = [c for c in names if frame.schema[c] == pl.String]
    result = {c: _logical_of(frame.schema[c]) for c in names if c not in text}
    if not text:
        return result
    checks = []
    for c in text:
        value = pl.col(c).str.strip_chars()
        checks.append(pl.col(c).count().alias(f"{c}\0n"))
        for kind, pattern in _PATTERNS.items():
            fits = value.str.contains(pattern)
            if kind in ("int", "float"):  # the pattern matches and the number is in range
                fits = fits & value.cast(LOGICAL_TYPES[kind], strict=False).is_not_null()
            if kind == "float":
                fits = fits & value.cast(pl.Float64, strict=False).is_finite()
            checks.append(fits.sum().alias(f"{c}\0{kind}"))
    counts = frame.select(checks).row(0, named=True)
    for c in text:
        n = counts[f"{c}\0n"]
        kind = next((k for k in _PATTERNS if n and counts[f"{c}\0{k}"] == n), "text")
        if kind == "float" and not _floats_read_back(frame[c]):
            kind = "text"
        result[c] = kind
    return result


def _floats_read_back(values: pl.Series) -> bool:
    """True if every value reads back as written after a trip through a 64-bit float.

    Up to 15 significant digits always do; the few longer values are checked exactly.
    """
    text = values.drop_nulls().str.strip_chars()
    mantissa = text.str.replace(r"[eE].*$", "").str.replace(r"^[-.0]+", "").str.replace(".", "")
    long = pl.DataFrame({"v": text, "n": mantissa.str.len_chars()}).filter(
        pl.col("n") > _FLOAT_DIGITS
    )
    return all(Decimal(f"{float(v):.{n}g}") == Decimal(v) for v, n in long.unique().iter_rows())


def _logical_of(dtype: pl.DataType) -> str:
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    return "text"
