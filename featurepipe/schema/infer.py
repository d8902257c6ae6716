"""Infer a column's type from its raw text values, never changing what a value says.

Null tokens are removed and surrounding whitespace ignored first. A column then gets the
first type below that holds *every* remaining value exactly; the checks run on the
column's distinct values, so the decision is the same whatever the row order:

1. ``bool``: true/false, yes/no, y/n, t/f in any case; ``0``/``1`` only when the column
   holds nothing else.
2. ``int8`` … ``int64``, ``uint64``: the narrowest width that holds the minimum and the
   maximum. Digits with an optional sign, ``1,234,567`` thousands separators allowed, no
   leading zeros (``007`` keeps the column text: an integer would drop the zeros).
   Beyond 64 bits: ``decimal(p,0)`` up to 38 digits.
3. ``decimal(p,s)``: numbers with a fixed scale, i.e. every fraction has the same
   number of digits and one of them ends in ``0`` (``12.50``: the writer kept the zero,
   so the scale means something), and all currency amounts (``$1,234.50``, ``12 €``;
   one symbol per column, kept in the schema as the unit).
4. ``float``: other decimal or scientific numbers (no leading zeros) that a 64-bit float
   gives back as written: up to 15 significant digits always do, longer ones are checked
   (``48.053808600000004`` does; ``0.12345678901234567`` does not and becomes a
   ``decimal``). ``inf``/``nan`` words are not numbers. Percentages (``12.5%``) are
   stored as fractions (``0.125``) with unit ``%``.
5. ``date``, ``local_datetime``, ``datetime``: ISO 8601 (``2013-01-01``,
   ``2013-01-01T05:00``, ``2013-01-01 05:00:00.25``), ``YYYY/MM/DD`` and the regional
   ``DD/MM/YYYY`` or ``MM/DD/YYYY`` (also with ``.`` or ``-``). The day/month order is
   decided once per column from the data (a first part above 12 means day first, a
   second part above 12 means month first); when every value is ambiguous the source's
   ``day_first`` option decides, and without it the column stays text with a note.
   Values with a UTC offset or ``Z`` become ``datetime`` (a UTC instant: the offset is
   normalized away, the instant kept); without an offset ``local_datetime``
   (wall-clock time, no zone invented). A column mixing both stays text.
6. ``time``: ``HH:MM[:SS[.f]]`` with hours below 24.
7. ``duration``: ISO 8601 durations (``PT1H30M``, ``P2DT3H``, ``-PT0.5S``).
8. ``json``: every value a JSON object (a polars struct) or every value a JSON array
   (a list) that decodes to the same content.
9. ``categorical``: other text with few distinct values (at most ``categorical_limit``,
   and at most half the number of values).
10. ``text``: everything else, and columns with no value at all (marked empty).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

import polars as pl

from .text import as_strings, is_text
from .types import (
    DECIMAL_MAX_PRECISION,
    FALSE_SPELLINGS,
    INTEGER_TYPES,
    TRUE_SPELLINGS,
    ColumnType,
    parse_expr,
    type_of_dtype,
)

__all__ = [
    "DEFAULT_NULL_VALUES",
    "InferenceOptions",
    "infer_column",
    "infer_dominant",
    "infer_frame",
    "infer_types",
    "polars_type",
]

DEFAULT_NULL_VALUES = ("", "NA", "N/A", "n/a", "#N/A", "null", "NULL", "None", "NaN", "nan", "-")

_FLOAT_DIGITS = 15
_WORD_BOOL = tuple(t for t in (*TRUE_SPELLINGS, *FALSE_SPELLINGS) if not t.isdigit())

_INT = r"[-+]?(?:0|[1-9][0-9]*)"
_INT_THOUSANDS = r"[-+]?[1-9][0-9]{0,2}(?:,[0-9]{3})+"
_NUM = r"(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)"
_NUM_THOUSANDS = r"(?:[1-9][0-9]{0,2}(?:,[0-9]{3})+(?:\.[0-9]*)?)"
_EXPONENT = r"(?:[eE][-+]?[0-9]+)"
_SYMBOLS = "$€£¥₹"
_CURRENCY = (
    rf"^[-+]?\s?[{_SYMBOLS}]\s?(?:{_NUM_THOUSANDS}|{_NUM})$"
    rf"|^[-+]?(?:{_NUM_THOUSANDS}|{_NUM})\s?[{_SYMBOLS}]$"
)
_PERCENT = rf"^[-+]?{_NUM}{_EXPONENT}?\s?%$"
_PLAIN = rf"^[-+]?(?:{_NUM_THOUSANDS}|{_NUM}{_EXPONENT}?)$"

_TIME = r"(\d{1,2}):(\d{2})(:\d{2}(\.\d{1,9})?)?"
_OFFSET = r"(Z|[+-]\d{2}(?::?\d{2})?)"
# (pattern of the date part, its strptime format; None = day/month order decided from data)
_DATES: tuple[tuple[str, str | None], ...] = (
    (r"\d{4}-\d{2}-\d{2}", "%Y-%m-%d"),
    (r"\d{4}/\d{1,2}/\d{1,2}", "%Y/%m/%d"),
    (r"(\d{1,2})/(\d{1,2})/\d{4}", None),
    (r"(\d{1,2})\.(\d{1,2})\.\d{4}", None),
    (r"(\d{1,2})-(\d{1,2})-\d{4}", None),
)


@dataclass(frozen=True)
class InferenceOptions:
    """Choices inference cannot make from the data alone.

    Attributes:
        day_first: order of ambiguous regional dates (``None``: keep them text).
        categorical_limit: most distinct values a text column may have to become
            categorical (0 turns categorical inference off).
    """

    day_first: bool | None = None
    categorical_limit: int = 256


def polars_type(logical: str) -> pl.DataType:
    """The default polars dtype of a logical type."""
    return ColumnType.of(logical).dtype


def infer_types(
    frame: pl.DataFrame,
    columns: Iterable[str] | None = None,
    options: InferenceOptions | None = None,
) -> dict[str, str]:
    """Infer the logical type name of columns (see the module docstring for the rules).

    Args:
        frame: raw frame; null tokens must already be nulls.
        columns: the columns to infer (default: all).
        options: inference choices.

    Returns:
        Column name to logical type name. Non-text columns keep their dtype's type.
    """
    return {c: t.logical for c, t in infer_frame(frame, columns, options).items()}


def infer_column(
    values: pl.Series,
    options: InferenceOptions | None = None,
    null_values: Sequence[str] = (),
) -> ColumnType:
    """The type of one column (see the module docstring for the rules).

    Args:
        values: the column.
        options: inference choices.
        null_values: tokens that mean "no value" (matched exactly).

    Returns:
        The column type, with the format or unit its text is written in.
    """
    frame = values.rename("c").to_frame()
    return infer_frame(frame, ["c"], options, null_values)["c"]


def infer_frame(
    frame: pl.DataFrame,
    columns: Iterable[str] | None = None,
    options: InferenceOptions | None = None,
    null_values: Sequence[str] = (),
) -> dict[str, ColumnType]:
    """The types of many columns; their distinct values are found in one parallel pass.

    Args:
        frame: the raw frame.
        columns: the columns to infer (default: all).
        options: inference choices.
        null_values: tokens that mean "no value" (matched exactly).

    Returns:
        Column name to column type.
    """
    options = options or InferenceOptions()
    names = list(columns) if columns is not None else frame.columns
    text = [c for c in names if is_text(frame.schema[c])]
    nulls = list(null_values)
    stats = frame.select(
        *(pl.col(c).unique(maintain_order=True).implode().alias(f"{c}\0distinct") for c in text),
        *(
            (pl.col(c).is_not_null() & ~pl.col(c).is_in(nulls)).sum().alias(f"{c}\0present")
            for c in text
        ),
    )
    result = {}
    for c in names:
        if c not in text:
            result[c] = type_of_dtype(frame.schema[c])
            continue
        distinct = as_strings(stats[f"{c}\0distinct"].explode().drop_nulls())
        if nulls:
            distinct = distinct.filter(~distinct.is_in(nulls))
        result[c] = _infer_distinct(distinct, int(stats[f"{c}\0present"][0]), options)
    return result


def _infer_distinct(distinct: pl.Series, present: int, options: InferenceOptions) -> ColumnType:
    """The type of a column from its distinct non-null values and its number of values."""
    if distinct.len() == 0:
        return ColumnType.of("text", empty=True, note="no values")
    stripped = distinct.str.strip_chars()
    padded = bool((stripped != distinct).any())
    if padded:
        stripped = stripped.unique(maintain_order=True)
    for detect in (_bool, _integer, _number, _temporal, _duration, _json):
        found = detect(stripped, options)
        if found is not None:
            return replace(found, trim=padded)
    note = _ambiguous_dates(stripped)
    n_unique = distinct.len()
    if n_unique <= options.categorical_limit and n_unique * 2 <= present:
        return ColumnType.of("categorical", note=note)
    return ColumnType.of("text", note=note)


_DOMINANT_SHARE = 0.8  # a column "almost" has a type when this share of its values fit it
_NUMBER_OR_DATE = r"^[\s\d.,:/+\-TZ%$€£]+$"


def infer_dominant(
    values: pl.Series, options: InferenceOptions | None = None, share: float = _DOMINANT_SHARE
) -> tuple[ColumnType | None, pl.Series]:
    """The type most values of a text column fit (at least ``share``), and the values that
    do not.

    Used where a column as a whole has no type: to find the format a hint leaves open,
    and to show in ``featurepipe schema`` which values keep a column text.

    Args:
        values: the column's values, null tokens already null.
        options: inference choices.
        share: the least share of the values the type must hold.

    Returns:
        The dominant type (``None`` if no type holds ``share`` of the values) and the
        values that do not fit it.
    """
    options = options or InferenceOptions()
    values = values.drop_nulls()
    none = (None, values.clear())
    if values.dtype != pl.String or values.len() == 0:
        return none
    shaped = values.filter(values.str.contains(_NUMBER_OR_DATE)).rename("value")
    if shaped.len() < share * values.len():
        return none
    # the most common values decide; drop the rarest until the rest have a type
    counts = shaped.value_counts(sort=True, name="n")
    keep = counts.height
    while keep > 0:
        head = counts.head(keep)
        near = _infer_distinct(head["value"], int(head["n"].sum()), options)
        if near.logical not in ("text", "categorical"):
            break
        keep = keep * 9 // 10
    else:
        return none
    near = replace(near, trim=True)
    parsed = pl.DataFrame({"v": values}).select(parse_expr("v", near))["v"]
    misfits = values.filter(parsed.is_null())
    if misfits.len() > (1 - share) * values.len():
        return none
    return near, misfits


def _all(values: pl.Series, pattern: str) -> bool:
    return bool(values.str.contains(pattern).all())


def _bool(values: pl.Series, options: InferenceOptions) -> ColumnType | None:
    if values.is_in(_WORD_BOOL).all():
        # a lone letter (only "F", only "Y") may be a code, not a flag: require both sides
        letters = values.str.len_chars().max() == 1
        if letters and (values.is_in(TRUE_SPELLINGS).all() or values.is_in(FALSE_SPELLINGS).all()):
            return None
        return ColumnType.of("bool")
    if values.is_in(("0", "1")).all() and values.len() == 2:
        return ColumnType.of("bool")
    return None


def _integer(values: pl.Series, options: InferenceOptions) -> ColumnType | None:
    plain = values.str.contains(f"^{_INT}$")
    thousands = False
    if not plain.all():
        grouped = values.str.contains(f"^{_INT_THOUSANDS}$")
        longest_plain = values.filter(plain).str.len_chars().max() or 0
        if not (plain | grouped).all() or int(longest_plain) > 4:  # type: ignore[arg-type]
            return None
        thousands = True
    digits = values.str.replace_all(r"[,+]", "")
    for name in ("int64", "uint64"):
        parsed = digits.cast(INTEGER_TYPES[name], strict=False)
        if parsed.null_count() == 0:
            low, high = parsed.min(), parsed.max()
            assert isinstance(low, int) and isinstance(high, int)  # noqa: S101
            if name == "int64":
                name = next(t for t in ("int8", "int16", "int32", "int64") if _fits(t, low, high))
            return ColumnType.of(name, thousands=thousands)
    width = int(digits.str.replace("-", "").str.len_chars().max())  # type: ignore[arg-type]
    if width <= DECIMAL_MAX_PRECISION:
        return ColumnType.of("decimal", dtype=pl.Decimal(width, 0), thousands=thousands)
    return None


def _fits(name: str, low: int, high: int) -> bool:
    bits = int(name[3:])
    return -(2 ** (bits - 1)) <= low and high < 2 ** (bits - 1)


def _number(values: pl.Series, options: InferenceOptions) -> ColumnType | None:
    unit: str | None = None
    if _all(values, _PERCENT):
        unit = "%"
    elif _all(values, _CURRENCY):
        symbols = values.str.extract(f"([{_SYMBOLS}])").unique()
        if symbols.len() != 1:
            return None
        unit = symbols[0]
    elif not _all(values, _PLAIN):
        return None
    bare = values.str.replace_all(f"[%,{_SYMBOLS}\\s+]", "")
    thousands = bool(values.str.contains(",", literal=True).any())
    mantissa = bare.str.replace(r"[eE].*$", "")
    has_exponent = bool(bare.str.contains("[eE]").any())
    fraction = mantissa.str.extract(r"\.([0-9]*)$").drop_nulls()
    scales = fraction.str.len_chars().unique()
    integer_part = mantissa.str.replace(r"^-", "").str.replace(r"\..*$", "")
    integer_digits = int(integer_part.str.len_chars().max())  # type: ignore[arg-type]
    scale = int(scales.max() or 0)  # type: ignore[arg-type]
    fixed_scale = scales.len() == 1 and scale > 0 and bool(fraction.str.ends_with("0").any())
    precision = integer_digits + scale
    as_decimal = ColumnType.of(
        "decimal", dtype=pl.Decimal(max(precision, 1), scale), unit=unit, thousands=thousands
    )
    if unit not in (None, "%") and not has_exponent and precision <= DECIMAL_MAX_PRECISION:
        return as_decimal
    if unit is None and fixed_scale and not has_exponent and precision <= DECIMAL_MAX_PRECISION:
        return as_decimal
    if _floats_read_back(bare):
        return ColumnType.of("float", unit=unit, thousands=thousands)
    if not has_exponent and unit is None and precision <= DECIMAL_MAX_PRECISION:
        return as_decimal
    return None


def _floats_read_back(text: pl.Series) -> bool:
    """True if every value reads back as written after a trip through a 64-bit float.

    Up to 15 significant digits always do (if in range); longer values are checked exactly.
    """
    numbers = text.cast(pl.Float64, strict=False)
    if numbers.null_count() or not numbers.is_finite().all():
        return False
    mantissa = text.str.replace(r"[eE].*$", "").str.replace(r"^[-.0]+", "").str.replace(".", "")
    long = pl.DataFrame({"v": text, "n": mantissa.str.len_chars()}).filter(
        pl.col("n") > _FLOAT_DIGITS
    )
    try:
        return all(Decimal(f"{float(v):.{n}g}") == Decimal(v) for v, n in long.iter_rows())
    except InvalidOperation:
        return False


def _day_first(values: pl.Series, pattern: str) -> bool | None | str:
    """Decide the day/month order of a regional date column from all its values."""
    parts = values.str.extract_groups(f"^{pattern}").struct.unnest()
    first, second = (parts[c].cast(pl.Int32) for c in parts.columns[:2])
    first_max, second_max = first.max(), second.max()
    assert isinstance(first_max, int) and isinstance(second_max, int)  # noqa: S101
    if first_max > 12 and second_max > 12:
        return "neither"
    if first_max > 12:
        return True
    if second_max > 12:
        return False
    return None


def _temporal(values: pl.Series, options: InferenceOptions) -> ColumnType | None:
    for date_pattern, date_format in _DATES:
        if not _all(values, rf"^{date_pattern}(?:[T ]{_TIME}\s?{_OFFSET}?)?$"):
            continue
        fmt = date_format
        if fmt is None:
            order = _day_first(values, date_pattern)
            if order is None:
                order = options.day_first
            if order is None or order == "neither":
                return None
            sep = values.str.extract(r"^\d{1,2}([/.-])")[0]
            fmt = sep.join(("%d", "%m", "%Y") if order else ("%m", "%d", "%Y"))
        return _with_time(values, date_pattern, fmt)
    if _all(values, rf"^{_TIME}$"):
        hours = values.str.extract(r"^(\d{1,2})").cast(pl.Int32)
        if int(hours.max()) < 24:  # type: ignore[arg-type]
            return _checked(values, ColumnType.of("time", format=_time_format(values)))
    return None


def _time_format(values: pl.Series) -> str:
    if values.str.contains(r":\d{2}:\d{2}").all():
        return "%H:%M:%S%.f"
    return "%H:%M"


def _with_time(values: pl.Series, date_pattern: str, fmt: str) -> ColumnType | None:
    dated = values.str.contains(rf"^{date_pattern}$")
    if dated.all():
        return _checked(values, ColumnType.of("date", format=fmt))
    if dated.any():
        return None  # dates mixed with datetimes: only text holds both as written
    offset = values.str.contains(rf"{_OFFSET}$")
    if offset.any() and not offset.all():
        return None  # instants mixed with wall-clock times
    times = values.str.extract(rf"[T ]({_TIME})")
    separator = "T" if values.str.contains(r"\dT\d").all() else " "
    if not values.str.contains(rf"\d{separator}\d").all():
        return None
    fraction = values.str.extract(r":\d{2}:\d{2}\.(\d+)").str.len_chars().max()
    unit = "ns" if fraction is not None and int(fraction) > 6 else "us"  # type: ignore[arg-type]
    full = fmt + separator + _time_format(times)
    if offset.all():
        spacing = " " if values.str.contains(rf"\s{_OFFSET}$").all() else ""
        dtype: pl.DataType = pl.Datetime(unit, "UTC")  # type: ignore[arg-type]
        return _checked(
            values, ColumnType.of("datetime", dtype=dtype, format=full + spacing + "%#z")
        )
    dtype = pl.Datetime(unit)  # type: ignore[arg-type]
    return _checked(values, ColumnType.of("local_datetime", dtype=dtype, format=full))


def _checked(values: pl.Series, ctype: ColumnType) -> ColumnType | None:
    """``ctype`` if every value parses with it (e.g. no 31st of February), else ``None``."""
    parsed = pl.DataFrame({"v": values}).select(parse_expr("v", ctype))["v"]
    return ctype if parsed.null_count() == 0 else None


def _ambiguous_dates(values: pl.Series) -> str | None:
    for pattern, fmt in _DATES:
        if fmt is None and _all(values, rf"^{pattern}(?:[T ]{_TIME}\s?{_OFFSET}?)?$"):
            return (
                "dates with an ambiguous day/month order: set day_first on the source "
                "or a hint with a format"
            )
    return None


def _duration(values: pl.Series, options: InferenceOptions) -> ColumnType | None:
    if not _all(values, r"^-?P") or values.str.contains(r"^-?PT?$").any():
        return None
    return _checked(values, ColumnType.of("duration"))


def _json(values: pl.Series, options: InferenceOptions) -> ColumnType | None:
    if not (_all(values, r"^\{.*\}$") or _all(values, r"^\[.*\]$")):
        return None
    try:
        decoded = values.str.json_decode(infer_schema_length=None)
        originals = [json.loads(v) for v in values]
    except (pl.exceptions.PolarsError, ValueError):
        return None
    if decoded.dtype == pl.Null or any(
        _without_nulls(a) != _without_nulls(b)
        for a, b in zip(originals, decoded.to_list(), strict=True)
    ):
        return None  # polars would change a value (mixed types in one field, …)
    return ColumnType.of("json", dtype=decoded.dtype)


def _without_nulls(value: Any) -> Any:
    """JSON content with null members removed (a struct has every field, null if absent)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    return value


def describe_values(values: Sequence[Any], limit: int = 3) -> str:
    """A few example values, for messages and ``featurepipe schema``."""
    return ", ".join(repr(v) for v in list(values)[:limit])
