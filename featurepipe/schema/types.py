"""Logical column types: their polars dtypes, how raw text is parsed into them, and widening.

A logical type is what a column *means* (``int16``, ``decimal``, ``datetime`` …); its
:class:`ColumnType` also carries how the raw text is written (a date format, a currency
symbol, thousands separators), so typing is a vectorised parse with no guessing per value.

Widening lattice (``evolve`` contracts move a column up it, never down)::

    bool → int8 → int16 → int32 → int64 → decimal → float → text
                               uint64 ─┘
    date → local_datetime → text      datetime, time, duration, json, categorical → text

``int64 → decimal`` is exact; ``decimal → float`` keeps 15 significant digits, which is
where the lattice stops being exact: a column only gets there when a value needs it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import polars as pl

__all__ = [
    "INTEGER_TYPES",
    "LOGICAL_TYPES",
    "ColumnType",
    "dtype_from_json",
    "dtype_to_json",
    "parse_expr",
    "type_of_dtype",
    "widen",
]

INTEGER_TYPES: dict[str, pl.DataType] = {
    "int8": pl.Int8(),
    "int16": pl.Int16(),
    "int32": pl.Int32(),
    "int64": pl.Int64(),
    "uint64": pl.UInt64(),
}

#: Every logical type, with the polars dtype that stores it (parametrised ones: a default).
LOGICAL_TYPES: dict[str, pl.DataType] = {
    "bool": pl.Boolean(),
    **INTEGER_TYPES,
    "decimal": pl.Decimal(38, 0),
    "float": pl.Float64(),
    "text": pl.String(),
    "categorical": pl.Categorical(),
    "date": pl.Date(),
    "time": pl.Time(),
    "datetime": pl.Datetime("us", "UTC"),
    "local_datetime": pl.Datetime("us"),
    "duration": pl.Duration("us"),
    "json": pl.String(),  # the real dtype (struct/list) comes from the data
}

#: Names a hint may use for a logical type.
ALIASES = {"int": "int64", "integer": "int64", "string": "text", "boolean": "bool"}

TRUE_TOKENS = ("true", "t", "yes", "y", "1")
FALSE_TOKENS = ("false", "f", "no", "n", "0")
# the spellings a boolean is read in: lower, upper and title case (``yes``, ``YES``, ``Yes``)
TRUE_SPELLINGS = tuple(
    dict.fromkeys(f(t) for t in TRUE_TOKENS for f in (str, str.upper, str.title))
)
FALSE_SPELLINGS = tuple(
    dict.fromkeys(f(t) for t in FALSE_TOKENS for f in (str, str.upper, str.title))
)

_NUMERIC_CHAIN = ("bool", "int8", "int16", "int32", "int64", "decimal", "float", "text")
DECIMAL_MAX_PRECISION = 38

_ISO_DURATION = (
    r"^(-)?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:\.(\d{1,6}))?S)?)?$"
)


@dataclass(frozen=True)
class ColumnType:
    """A column's logical type and how its raw text is written.

    Attributes:
        logical: one of :data:`LOGICAL_TYPES`.
        dtype: the polars dtype the column is stored in.
        format: strptime format of dates, times and datetimes.
        unit: ``%`` for percentages (stored as fractions), or the currency symbol.
        thousands: raw numbers carry ``,`` thousands separators.
        note: why inference chose this type when that is not obvious (e.g. text because
            the day/month order is ambiguous).
        empty: no value was seen; the type is a placeholder.
        trim: strip surrounding whitespace before parsing (inference turns it off when no
            value has any, which makes parsing about three times faster).
    """

    logical: str
    dtype: pl.DataType
    format: str | None = None
    unit: str | None = None
    thousands: bool = False
    note: str | None = None
    empty: bool = False
    trim: bool = field(default=True, compare=False)  # how to parse, not what is stored

    @classmethod
    def of(cls, logical: str, **kwargs: Any) -> ColumnType:
        """The default column type of a logical type name (aliases such as ``int`` allowed)."""
        name = ALIASES.get(logical, logical)
        if name not in LOGICAL_TYPES:
            raise ValueError(f"unknown type {logical!r}; known: {', '.join(LOGICAL_TYPES)}")
        return cls(name, kwargs.pop("dtype", LOGICAL_TYPES[name]), **kwargs)

    def describe(self) -> str:
        """Short text such as ``decimal(10,2) $`` or ``date %d/%m/%Y``."""
        text = self.logical
        if isinstance(self.dtype, pl.Decimal):
            text += f"({self.dtype.precision},{self.dtype.scale})"
        if self.logical == "json":
            text += f" {self.dtype}"
        return " ".join(p for p in (text, self.unit, self.format) if p)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the schema store's form)."""
        data = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("dtype", "trim") and v not in (None, False)
        }
        return {**data, "dtype": dtype_to_json(self.dtype)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColumnType:
        """Inverse of :meth:`to_json`."""
        return cls(**{**data, "dtype": dtype_from_json(data["dtype"])})


def dtype_to_json(dtype: Any) -> Any:
    """A polars dtype as JSON (nested types included)."""
    if isinstance(dtype, pl.Struct):
        return {"struct": {f.name: dtype_to_json(f.dtype) for f in dtype.fields}}
    if isinstance(dtype, pl.List):
        return {"list": dtype_to_json(dtype.inner)}
    if isinstance(dtype, pl.Decimal):
        return {"decimal": [dtype.precision, dtype.scale]}
    if isinstance(dtype, pl.Datetime):
        return {"datetime": [dtype.time_unit, dtype.time_zone]}
    if isinstance(dtype, pl.Duration):
        return {"duration": dtype.time_unit}
    return str(dtype)


_SIMPLE_DTYPES: dict[str, pl.DataType] = {
    str(t): t
    for t in (
        pl.Boolean(), pl.Int8(), pl.Int16(), pl.Int32(), pl.Int64(), pl.UInt8(), pl.UInt16(),
        pl.UInt32(), pl.UInt64(), pl.Float32(), pl.Float64(), pl.String(), pl.Categorical(),
        pl.Date(), pl.Time(), pl.Null(), pl.Binary(),
    )
}  # fmt: skip


def dtype_from_json(data: Any) -> pl.DataType:
    """Inverse of :func:`dtype_to_json`."""
    if isinstance(data, str):
        return _SIMPLE_DTYPES[data]
    if "struct" in data:
        return pl.Struct({k: dtype_from_json(v) for k, v in data["struct"].items()})
    if "list" in data:
        return pl.List(dtype_from_json(data["list"]))
    if "decimal" in data:
        return pl.Decimal(*data["decimal"])
    if "datetime" in data:
        return pl.Datetime(*data["datetime"])
    return pl.Duration(data["duration"])


def _strip_number(value: pl.Expr, ctype: ColumnType) -> pl.Expr:
    if ctype.unit:
        value = value.str.replace(re.escape(ctype.unit), "", literal=False).str.strip_chars()
        value = value.str.replace(r"^([-+])\s+", "$1")
    if ctype.thousands:
        value = value.str.replace_all(",", "", literal=True)
    return value


def parse_expr(column: str, ctype: ColumnType) -> pl.Expr:
    """The expression that parses raw text column ``column`` into ``ctype``.

    Values that do not parse become null; callers compare with the raw nulls to find
    (and quarantine) them.
    """
    return _parse(column, ctype).alias(column)


def _parse(column: str, ctype: ColumnType) -> pl.Expr:
    raw = pl.col(column)
    value = raw.str.strip_chars() if ctype.trim else raw
    logical = ctype.logical
    if logical == "text":
        return raw
    if logical == "categorical":
        return raw.cast(pl.Categorical())
    if logical == "bool":
        return (
            pl.when(value.is_in(TRUE_SPELLINGS))
            .then(True)
            .when(value.is_in(FALSE_SPELLINGS))
            .then(False)
            .otherwise(None)
        )
    if logical in INTEGER_TYPES or logical == "decimal":
        return _strip_number(value, ctype).cast(ctype.dtype, strict=False)
    if logical == "float":
        number = _strip_number(value, ctype).cast(pl.Float64, strict=False)
        return number / 100 if ctype.unit == "%" else number
    if logical == "date":
        return value.str.to_date(ctype.format or "%Y-%m-%d", strict=False)
    if logical == "time":
        return value.str.to_time(ctype.format or "%H:%M:%S%.f", strict=False)
    if logical in ("datetime", "local_datetime"):
        assert isinstance(ctype.dtype, pl.Datetime)  # noqa: S101 (narrowing for mypy)
        aware = logical == "datetime"
        default = "%Y-%m-%dT%H:%M:%S%.f" + ("%#z" if aware else "")
        return value.str.to_datetime(
            ctype.format or default,
            strict=False,
            time_unit=ctype.dtype.time_unit,
            time_zone="UTC" if aware else None,
        )
    if logical == "duration":
        return _parse_iso_duration(value)
    if logical == "json":
        return value.str.json_decode(ctype.dtype)
    raise ValueError(f"no parser for logical type {logical!r}")


def _parse_iso_duration(value: pl.Expr) -> pl.Expr:
    parts = value.str.extract_groups(_ISO_DURATION)
    number = [parts.struct.field(str(i)).cast(pl.Int64).fill_null(0) for i in range(2, 7)]
    weeks, days, hours, minutes, seconds = number
    micros = parts.struct.field("7").str.pad_end(6, "0").cast(pl.Int64).fill_null(0)
    total = ((((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds) * 1_000_000 + micros
    signed = pl.when(parts.struct.field("1") == "-").then(-total).otherwise(total)
    matched = value.str.contains(_ISO_DURATION) & value.str.contains(r"\d")
    return pl.when(matched).then(signed).otherwise(None).cast(pl.Duration("us"))


def _decimal_parts(dtype: pl.DataType) -> tuple[int, int]:
    if isinstance(dtype, pl.Decimal):
        return dtype.precision, dtype.scale
    if isinstance(dtype, pl.Boolean):
        return 1, 0
    digits = {"Int8": 3, "Int16": 5, "Int32": 10, "Int64": 19, "UInt64": 20}
    return digits[str(dtype)], 0


def widen(old: ColumnType, new: ColumnType) -> ColumnType:
    """The narrowest type on the lattice that holds the values of both types.

    An empty column (no values seen) takes the other side's type.
    """
    if new.empty:
        return old
    if old.empty:
        return new
    if old.logical == new.logical and old.dtype == new.dtype:
        return old if old.unit == new.unit else ColumnType.of("text")
    a, b = old.logical, new.logical
    if "uint64" in (a, b) and a != b:  # unsigned and signed meet in decimal
        a, b = ("decimal" if x == "uint64" else x for x in (a, b))
    if a in _NUMERIC_CHAIN and b in _NUMERIC_CHAIN and old.unit == new.unit:
        top = max(a, b, key=_NUMERIC_CHAIN.index)
        if top == "decimal":
            (p1, s1), (p2, s2) = _decimal_parts(old.dtype), _decimal_parts(new.dtype)
            scale = max(s1, s2)
            precision = max(p1 - s1, p2 - s2) + scale
            if precision > DECIMAL_MAX_PRECISION:
                return ColumnType.of("float", unit=old.unit)
            return ColumnType.of("decimal", dtype=pl.Decimal(precision, scale), unit=old.unit)
        if top == "text":
            return ColumnType.of("text")
        return replace(old if top == old.logical else new, format=None)
    if {a, b} == {"date", "local_datetime"}:
        return replace(old if a == "local_datetime" else new, format=None)
    return ColumnType.of("text")


def type_of_dtype(dtype: pl.DataType) -> ColumnType:
    """The logical type of a column that arrives typed (Parquet, SQL, JSON numbers)."""
    names = {str(v): k for k, v in INTEGER_TYPES.items()}
    if str(dtype) in names:
        return ColumnType.of(names[str(dtype)])
    if dtype.is_integer():  # small unsigned: the next signed width holds them
        widths = {"UInt8": "int16", "UInt16": "int32", "UInt32": "int64"}
        return ColumnType.of(widths[str(dtype)])
    if dtype.is_float():
        return ColumnType.of("float", dtype=dtype)
    for logical in ("bool", "date", "time", "categorical"):
        if dtype == LOGICAL_TYPES[logical]:
            return ColumnType.of(logical)
    if isinstance(dtype, pl.Decimal):
        return ColumnType.of("decimal", dtype=dtype)
    if isinstance(dtype, pl.Datetime):
        return ColumnType.of("datetime" if dtype.time_zone else "local_datetime", dtype=dtype)
    if isinstance(dtype, pl.Duration):
        return ColumnType.of("duration", dtype=dtype)
    if isinstance(dtype, pl.Struct | pl.List):
        return ColumnType.of("json", dtype=dtype)
    return ColumnType.of("text", dtype=dtype)
