"""Destination type mapping: how each logical type is stored in Delta, PostgreSQL and SQLite.

Every polars dtype belongs to one logical type. Each destination declares, per logical
type, what it stores and how; a type it lacks is transformed into one it has. A
transform never loses a value silently: where it could, the values that would be lost
are counted and the load is refused with an error naming the table and column.
``docs/types.md`` is generated from this module (``python -m featurepipe.schema.mapping``),
so the documented table cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from ..errors import SchemaError

__all__ = [
    "DESTINATIONS",
    "LOGICAL",
    "TypeMapping",
    "from_destination",
    "logical_type",
    "render_markdown",
    "storage_type",
    "to_destination",
]

DESTINATIONS = ("delta", "postgres", "sqlite")

# logical type -> (an example polars dtype, what it holds)
LOGICAL: dict[str, tuple[str, str]] = {
    "bool": ("Boolean", "true/false"),
    "int8": ("Int8", "signed 8-bit integer"),
    "int16": ("Int16", "signed 16-bit integer"),
    "int32": ("Int32", "signed 32-bit integer"),
    "int64": ("Int64", "signed 64-bit integer"),
    "uint8": ("UInt8", "unsigned 8-bit integer"),
    "uint16": ("UInt16", "unsigned 16-bit integer"),
    "uint32": ("UInt32", "unsigned 32-bit integer"),
    "uint64": ("UInt64", "unsigned 64-bit integer"),
    "float32": ("Float32", "32-bit float, NaN and ±inf included"),
    "float": ("Float64", "64-bit float, NaN and ±inf included"),
    "decimal": ("Decimal(p, s)", "exact decimal, precision ≤ 38"),
    "text": ("String", "UTF-8 text"),
    "categorical": ("Categorical, Enum", "text from a small set of values"),
    "binary": ("Binary", "bytes"),
    "date": ("Date", "calendar date"),
    "time": ("Time", "time of day, nanoseconds"),
    "local_datetime": ("Datetime(unit)", "timestamp without time zone"),
    "datetime": ("Datetime(unit, zone)", "instant with a time zone"),
    "duration": ("Duration(unit)", "elapsed time"),
    "list": ("List, Array", "a list of values of one type"),
    "struct": ("Struct", "named fields"),
    "null": ("Null", "a column with no value at all"),
}


@dataclass(frozen=True)
class TypeMapping:
    """How one destination stores one logical type.

    Attributes:
        stored_as: the destination's type (``{p},{s}`` stand for a decimal's precision/scale).
        how: the transform applied on write, empty when stored as is.
        refused: values the destination cannot hold exactly; loading one is refused.
    """

    stored_as: str
    how: str = ""
    refused: str = ""


_SUB_MICROSECOND = "values with sub-microsecond digits"

# fmt: off
_MAPPINGS: dict[str, dict[str, TypeMapping]] = {
    "delta": {
        "bool": TypeMapping("boolean"),
        "int8": TypeMapping("byte"),
        "int16": TypeMapping("short"),
        "int32": TypeMapping("integer"),
        "int64": TypeMapping("long"),
        "uint8": TypeMapping("short", "widened to a signed type"),
        "uint16": TypeMapping("integer", "widened to a signed type"),
        "uint32": TypeMapping("long", "widened to a signed type"),
        "uint64": TypeMapping("decimal(20,0)", "exact decimal (no unsigned 64-bit type)"),
        "float32": TypeMapping("float"),
        "float": TypeMapping("double"),
        "decimal": TypeMapping("decimal({p},{s})"),
        "text": TypeMapping("string"),
        "categorical": TypeMapping("string", "stored as its text"),
        "binary": TypeMapping("binary"),
        "date": TypeMapping("date"),
        "time": TypeMapping("string", "ISO text HH:MM:SS.fffffffff (no time type)"),
        "local_datetime": TypeMapping("timestamp_ntz", "microseconds", _SUB_MICROSECOND),
        "datetime": TypeMapping(
            "timestamp", "converted to UTC (the zone name is not kept)", _SUB_MICROSECOND
        ),
        "duration": TypeMapping("long", "microseconds (no interval type)", _SUB_MICROSECOND),
        "list": TypeMapping("array"),
        "struct": TypeMapping("struct"),
        "null": TypeMapping("string", "all null"),
    },
    "postgres": {
        "bool": TypeMapping("boolean"),
        "int8": TypeMapping("smallint", "widened (no 1-byte integer)"),
        "int16": TypeMapping("smallint"),
        "int32": TypeMapping("integer"),
        "int64": TypeMapping("bigint"),
        "uint8": TypeMapping("smallint", "widened to a signed type"),
        "uint16": TypeMapping("integer", "widened to a signed type"),
        "uint32": TypeMapping("bigint", "widened to a signed type"),
        "uint64": TypeMapping("numeric(20,0)", "exact decimal (no unsigned 64-bit type)"),
        "float32": TypeMapping("real"),
        "float": TypeMapping("double precision"),
        "decimal": TypeMapping("numeric({p},{s})"),
        "text": TypeMapping("text", "", "text holding a NUL character (\\x00)"),
        "categorical": TypeMapping("text", "stored as its text"),
        "binary": TypeMapping("bytea"),
        "date": TypeMapping("date"),
        "time": TypeMapping("time", "microseconds", _SUB_MICROSECOND),
        "local_datetime": TypeMapping("timestamp", "microseconds", _SUB_MICROSECOND),
        "datetime": TypeMapping(
            "timestamptz", "converted to UTC (the zone name is not kept)", _SUB_MICROSECOND
        ),
        "duration": TypeMapping("bigint", "microseconds", _SUB_MICROSECOND),
        "list": TypeMapping("jsonb", "JSON array"),
        "struct": TypeMapping("jsonb", "JSON object"),
        "null": TypeMapping("text", "all null"),
    },
    "sqlite": {
        "bool": TypeMapping("INTEGER", "0 or 1"),
        "int8": TypeMapping("INTEGER"),
        "int16": TypeMapping("INTEGER"),
        "int32": TypeMapping("INTEGER"),
        "int64": TypeMapping("INTEGER"),
        "uint8": TypeMapping("INTEGER"),
        "uint16": TypeMapping("INTEGER"),
        "uint32": TypeMapping("INTEGER"),
        "uint64": TypeMapping("TEXT", "decimal text (INTEGER is signed 64-bit)"),
        "float32": TypeMapping("REAL", "widened to 64-bit", "NaN (SQLite stores it as NULL)"),
        "float": TypeMapping("REAL", "", "NaN (SQLite stores it as NULL)"),
        "decimal": TypeMapping("TEXT", "exact decimal text (REAL would round)"),
        "text": TypeMapping("TEXT"),
        "categorical": TypeMapping("TEXT", "stored as its text"),
        "binary": TypeMapping("BLOB"),
        "date": TypeMapping("TEXT", "ISO 8601 YYYY-MM-DD"),
        "time": TypeMapping("TEXT", "ISO 8601 HH:MM:SS.fffffffff"),
        "local_datetime": TypeMapping("TEXT", "ISO 8601, microseconds", _SUB_MICROSECOND),
        "datetime": TypeMapping(
            "TEXT", "ISO 8601 in UTC with +00:00, microseconds", _SUB_MICROSECOND
        ),
        "duration": TypeMapping("INTEGER", "microseconds", _SUB_MICROSECOND),
        "list": TypeMapping("TEXT", "JSON array"),
        "struct": TypeMapping("TEXT", "JSON object"),
        "null": TypeMapping("TEXT", "all null"),
    },
}
# fmt: on

_INTEGERS = {
    pl.Int8: "int8",
    pl.Int16: "int16",
    pl.Int32: "int32",
    pl.Int64: "int64",
    pl.UInt8: "uint8",
    pl.UInt16: "uint16",
    pl.UInt32: "uint32",
    pl.UInt64: "uint64",
}


def logical_type(dtype: pl.DataType) -> str:
    """The logical type of a polars dtype.

    Raises:
        SchemaError: the dtype has no logical type (e.g. Object, Int128).
    """
    base = dtype.base_type()
    if base in _INTEGERS:
        return _INTEGERS[base]
    simple = {
        pl.Boolean: "bool",
        pl.Float32: "float32",
        pl.Float64: "float",
        pl.Decimal: "decimal",
        pl.String: "text",
        pl.Categorical: "categorical",
        pl.Enum: "categorical",
        pl.Binary: "binary",
        pl.Date: "date",
        pl.Time: "time",
        pl.Duration: "duration",
        pl.List: "list",
        pl.Array: "list",
        pl.Struct: "struct",
        pl.Null: "null",
    }
    if base in simple:
        return simple[base]
    if isinstance(dtype, pl.Datetime):
        return "datetime" if dtype.time_zone else "local_datetime"
    raise SchemaError(f"type {dtype} has no destination mapping; cast the column first")


def storage_type(destination: str, dtype: pl.DataType) -> str:
    """The destination's column type for a polars dtype, e.g. ``numeric(20,0)``."""
    stored = _MAPPINGS[destination][logical_type(dtype)].stored_as
    if isinstance(dtype, pl.Decimal):
        stored = stored.format(p=dtype.precision or 38, s=dtype.scale)
    return stored


def _json(column: str) -> pl.Expr:
    # polars encodes structs as JSON; a one-field wrapper encodes lists too.
    wrapped = pl.struct(pl.col(column).alias("v")).struct.json_encode()
    text = wrapped.str.strip_prefix('{"v":').str.strip_suffix("}")
    return pl.when(pl.col(column).is_null()).then(None).otherwise(text)


def _microseconds(dtype: pl.DataType) -> Callable[[str], pl.Expr]:
    def cast(column: str) -> pl.Expr:
        if isinstance(dtype, pl.Duration):
            return pl.col(column).cast(pl.Duration("us")).dt.total_microseconds()
        zone = getattr(dtype, "time_zone", None)
        target = pl.Datetime("us", "UTC" if zone else None)
        expr = pl.col(column).dt.convert_time_zone("UTC") if zone else pl.col(column)
        return expr.cast(target)

    return cast


def _sub_microsecond(column: str, dtype: pl.DataType) -> pl.Expr | None:
    unit = getattr(dtype, "time_unit", None)
    if isinstance(dtype, pl.Time):
        return pl.col(column).cast(pl.Int64) % 1000 != 0
    if unit == "ns":
        return pl.col(column).cast(pl.Int64) % 1000 != 0
    return None


def _refusals(destination: str, column: str, dtype: pl.DataType) -> list[tuple[pl.Expr, str]]:
    """Expressions true where a value cannot be stored exactly, each with its reason."""
    logical = logical_type(dtype)
    checks: list[tuple[pl.Expr, str]] = []
    refused = _MAPPINGS[destination][logical].refused
    if refused == _SUB_MICROSECOND or (destination == "postgres" and logical == "time"):
        expr = _sub_microsecond(column, dtype)
        if expr is not None:
            checks.append((expr, refused))
    if destination == "sqlite" and logical.startswith("float"):
        checks.append((pl.col(column).is_nan(), refused))
    if destination == "postgres" and logical == "text":
        checks.append((pl.col(column).str.contains("\x00", literal=True), refused))
    return checks


def _encode(destination: str, column: str, dtype: pl.DataType) -> pl.Expr | None:
    """The expression that turns a column into what the destination stores (None: as is)."""
    logical = logical_type(dtype)
    col = pl.col(column)
    if logical in ("categorical", "null"):
        return col.cast(pl.String)
    if logical in ("local_datetime", "datetime") and destination != "sqlite":
        zone = getattr(dtype, "time_zone", None)
        if getattr(dtype, "time_unit", None) == "us" and zone in (None, "UTC"):
            return None  # already what the destination stores
    if logical in ("local_datetime", "datetime", "duration"):
        micro = _microseconds(dtype)(column)
        if destination == "sqlite" and logical != "duration":
            fmt = "%Y-%m-%d %H:%M:%S%.6f" + ("+00:00" if logical == "datetime" else "")
            return micro.dt.to_string(fmt)
        return micro
    if destination == "delta":
        casts = {"uint8": pl.Int16, "uint16": pl.Int32, "uint32": pl.Int64}
        if logical in casts:
            return col.cast(casts[logical])
        if logical == "uint64":
            return col.cast(pl.Decimal(20, 0))
        if logical == "time":
            return col.dt.to_string("%H:%M:%S%.9f")
        return None
    if destination == "postgres":
        if logical == "uint64":
            return col.cast(pl.Decimal(20, 0))
        if logical == "binary":
            return pl.lit("\\x") + col.bin.encode("hex")
        if logical in ("list", "struct"):
            return _json(column)
        if logical == "time":
            return col.dt.to_string("%H:%M:%S%.6f")
        return None
    # sqlite
    if logical in ("uint64", "decimal"):
        return col.cast(pl.String)
    if logical == "date":
        return col.dt.to_string("%Y-%m-%d")
    if logical == "time":
        return col.dt.to_string("%H:%M:%S%.9f")
    if logical in ("list", "struct"):
        return _json(column)
    if logical == "float32":
        return col.cast(pl.Float64)
    return None


def to_destination(
    destination: str,
    table: str,
    frame: pl.DataFrame,
    *,
    keep_dictionary: bool = False,
    batch_start: int | None = None,
) -> pl.DataFrame:
    """Transform a frame into the types a destination stores, refusing lossy values.

    Args:
        destination: ``delta``, ``postgres`` or ``sqlite``.
        table: table name, for error messages.
        frame: the rows to load.
        keep_dictionary: leave categorical columns as they are, for a writer that stores
            them as dictionary-encoded text (Parquet).
        batch_start: the rows of the load before this frame, when it is one batch of a
            larger load, so that the error numbers rows in the whole load.

    Returns:
        The frame with every column in a type the destination holds.

    Raises:
        SchemaError: a column has no mapping, or holds values the destination cannot
            store exactly; names the table, column, count and the first row.
    """
    checks: dict[str, tuple[pl.Expr, str]] = {}
    encoded: list[pl.Expr] = []
    for column, dtype in frame.schema.items():
        if keep_dictionary and logical_type(dtype) == "categorical":
            continue
        try:
            expr = _encode(destination, column, dtype)
        except SchemaError as exc:
            raise SchemaError(f"table {table!r}, column {column!r}: {exc}") from None
        if expr is not None:
            encoded.append(expr.alias(column))
        for i, (check, reason) in enumerate(_refusals(destination, column, dtype)):
            checks[f"{column}\0{i}"] = (check, reason)
    if checks and frame.height:
        counts = frame.select(
            check.fill_null(False).sum().alias(key) for key, (check, _) in checks.items()
        ).row(0, named=True)
        for key, count in counts.items():
            if count:
                column, reason = key.split("\0")[0], checks[key][1]
                first = frame.select(checks[key][0].fill_null(False).arg_max()).item()
                where = "" if batch_start is None else f" in the batch from row {batch_start + 1}"
                raise SchemaError(
                    f"table {table!r}, column {column!r}: {count} values{where} cannot be stored "
                    f"in {destination} ({reason}; first at row {(batch_start or 0) + first + 1}); "
                    "nothing was written. "
                    "Transform the column before loading (see docs/types.md)."
                )
    return frame.with_columns(encoded) if encoded else frame


_TEXT_FORMATS = {
    "date": "%Y-%m-%d",
    "time": "%H:%M:%S%.f",
    "local_datetime": "%Y-%m-%d %H:%M:%S%.f",
    "datetime": "%Y-%m-%d %H:%M:%S%.f%#z",
}


def _decode(column: str, raw: pl.DataType, dtype: pl.DataType) -> pl.Expr:
    logical = logical_type(dtype)
    col = pl.col(column)
    if logical in ("text", "categorical", "null"):
        return col.cast(dtype)
    if logical in ("duration", "local_datetime", "datetime") and raw != pl.String:
        micro = col.cast(pl.Int64)
        if logical == "duration":
            return pl.duration(microseconds=micro).cast(dtype)
        return micro.cast(pl.Datetime("us", "UTC" if logical == "datetime" else None)).cast(dtype)
    if raw != pl.String:
        return col.cast(dtype)
    if logical == "bool":
        truth = col.str.to_lowercase().is_in(["t", "true", "1"])
        return pl.when(col.is_null()).then(None).otherwise(truth)
    if logical == "binary":
        return col.str.strip_prefix("\\x").str.decode("hex")
    if logical in ("list", "struct"):
        return col.str.json_decode(dtype)
    if logical == "duration":
        return pl.duration(microseconds=col.cast(pl.Int64)).cast(dtype)
    if logical == "date":
        return col.str.to_date(_TEXT_FORMATS["date"])
    if logical == "time":
        return col.str.to_time(_TEXT_FORMATS["time"]).cast(dtype)
    if logical == "local_datetime":
        return (
            col.str.replace("T", " ")
            .str.to_datetime(_TEXT_FORMATS["local_datetime"], time_unit="us")
            .cast(dtype)
        )
    if logical == "datetime":
        zone = getattr(dtype, "time_zone", None) or "UTC"
        parsed = col.str.replace("T", " ").str.to_datetime(
            _TEXT_FORMATS["datetime"], time_unit="us", time_zone="UTC"
        )
        return parsed.dt.convert_time_zone(zone).cast(dtype)
    return col.cast(dtype)


def from_destination(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Turn rows read back from a destination (text, integers, floats, bytes) into the
    polars types they were loaded with.

    Args:
        frame: the rows as read; columns absent from ``schema`` are kept as they are.
        schema: the polars schema stored when the table was loaded.
    """
    return frame.with_columns(
        _decode(c, frame.schema[c], dtype).alias(c)
        for c, dtype in schema.items()
        if c in frame.columns and frame.schema[c] != dtype
    )


def render_markdown() -> str:
    """The type mapping table as Markdown (the text of ``docs/types.md``)."""
    lines = [
        "# Destination type mapping",
        "",
        "Generated by `python -m featurepipe.schema.mapping` from "
        "`featurepipe/schema/mapping.py`; do not edit by hand.",
        "",
        "Each polars type belongs to a logical type; each destination stores it as shown. "
        "*Refused* values stop the load with an error naming the table, column and first "
        "row, and nothing is written. PostgreSQL and SQLite also keep each table's polars "
        "schema, so reads give back the original types; Delta tables are read back in the "
        "stored types.",
        "",
        "The logical type names are those of hints and stored schemas "
        "(`featurepipe/schema/types.py`); inferred `json` columns are stored as `list` or "
        "`struct`. `float32`, `uint8`–`uint32`, `binary`, `list`, `struct` and `null` arrive "
        "only from typed sources (Parquet, SQL).",
        "",
        "| logical type | polars | holds | " + " | ".join(DESTINATIONS) + " |",
        "|---|---|---|" + "---|" * len(DESTINATIONS),
    ]
    for logical, (polars_name, holds) in LOGICAL.items():
        cells = []
        for destination in DESTINATIONS:
            m = _MAPPINGS[destination][logical]
            cell = f"`{m.stored_as}`"
            if m.how:
                cell += f" — {m.how}"
            if m.refused:
                cell += f"; refused: {m.refused}"
            cells.append(cell)
        lines.append(f"| {logical} | {polars_name} | {holds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(render_markdown())
