"""Type a raw frame and enforce the table's schema contract; what does not fit is quarantined.

Contract modes (the modes dlt offers, with the same meaning), set per table and per column:

``evolve``
    New columns are added; a type change widens the column along the lattice in
    :mod:`featurepipe.schema.types` (e.g. ``int16 → decimal → float → text``).
``freeze``
    Any new column or type change raises :class:`~featurepipe.errors.SchemaError`; nothing
    is loaded. A table with no stored schema cannot be frozen (load it once first).
``discard_row``
    Rows with a value in a new column, or a value that does not fit the stored type, are
    moved to quarantine whole; the schema does not change.
``discard_value``
    Such values are moved to quarantine and the row is loaded without them; the schema
    does not change.

A table with no stored schema takes its first schema from the data (all modes but freeze).
Values that fail a hinted type always quarantine their row. Nothing is nulled silently:
every quarantined value is a row of the quarantine table, with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import polars as pl

from ..errors import SchemaError
from .infer import DEFAULT_NULL_VALUES, InferenceOptions, infer_dominant, infer_frame
from .names import unique_names
from .store import ColumnSchema, TableSchema
from .text import as_strings, encode_batches, is_encoded, is_text, map_encoded
from .types import ColumnType, parse_expr, widen

__all__ = ["CONTRACT_MODES", "QUARANTINE_SCHEMA", "ContractMode", "TypedTable", "apply_schema"]

log = logging.getLogger(__name__)

ContractMode = Literal["evolve", "freeze", "discard_row", "discard_value"]
CONTRACT_MODES: tuple[ContractMode, ...] = ("evolve", "freeze", "discard_row", "discard_value")

ROW = "_fp_row"

QUARANTINE_SCHEMA = pl.Schema(
    {
        "source": pl.String(),
        "table": pl.String(),
        "load_id": pl.String(),
        "row": pl.Int64(),
        "column": pl.String(),
        "value": pl.String(),
        "reason": pl.String(),
    }
)


@dataclass(frozen=True)
class TypedTable:
    """A typed frame, its schema and the quarantined values.

    Attributes:
        table: table name.
        frame: the typed rows, columns renamed to destination-safe names.
        schema: the schema of this load, with the version it has once saved (the stored
            version if nothing changed); save it with ``SchemaStore.save`` after the load.
        quarantine: one row per value that did not fit (source, table, load id, row,
            column, raw value, reason); ``row`` is the 1-based data row in the source.
        rows_in: rows received.
    """

    table: str
    frame: pl.DataFrame
    schema: TableSchema
    quarantine: pl.DataFrame
    rows_in: int
    changes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def types(self) -> dict[str, str]:
        """Column name to logical type name."""
        return self.schema.types

    @property
    def rows_quarantined(self) -> int:
        """Rows held back whole because a value did not fit."""
        return self.rows_in - self.frame.height

    @property
    def values_quarantined(self) -> int:
        """Values moved to quarantine (held-back rows and discarded values)."""
        return self.quarantine.height


@dataclass
class _Column:
    original: str
    name: str
    ctype: ColumnType  # how the raw text is parsed
    mode: ContractMode
    target: ColumnType | None = None  # what is stored, when wider than ``ctype``
    drop: bool = False  # a new column a discard contract keeps out
    checked: bool = False  # values that do not parse are quarantined
    absent: bool = False  # every value is quarantined (a column the contract keeps out)
    reason: str = ""
    discard: Literal["row", "value"] = "row"

    @property
    def stored(self) -> ColumnType:
        return self.target or self.ctype


def _hint_type(
    hint: Any, inferred: ColumnType, values: pl.Series, nulls: list[str], options: InferenceOptions
) -> ColumnType:
    """The column type a hint asks for; inference fills in what the hint leaves open
    (the date format, a currency unit, thousands separators), from most of the values
    when not all of them fit."""
    name = hint if isinstance(hint, str) else hint.type
    fmt = None if isinstance(hint, str) else getattr(hint, "format", None)
    wanted = ColumnType.of(name, format=fmt)
    if fmt is not None:
        return wanted
    near = inferred
    if not _same_family(near, wanted) and is_text(values.dtype):
        # the hint names the type: the format needs only to be the most common one
        values = as_strings(values)
        found, _ = infer_dominant(values.set(values.is_in(nulls), None), options, share=0.5)
        near = found or wanted
    if wanted.logical == "decimal":  # the data's scale; room for any number of digits
        scale = near.dtype.scale if isinstance(near.dtype, pl.Decimal) else 0
        if not _same_family(near, wanted):
            return replace(wanted, dtype=pl.Decimal(38, scale))
        return replace(
            wanted, dtype=pl.Decimal(38, scale), unit=near.unit, thousands=near.thousands
        )
    if near.logical == wanted.logical:
        return near
    if _same_family(near, wanted):
        return replace(wanted, unit=near.unit, thousands=near.thousands)
    return wanted


def _same_family(a: ColumnType, b: ColumnType) -> bool:
    integers = ("int8", "int16", "int32", "int64", "uint64")
    if a.logical == b.logical:
        return True
    if b.logical in integers:
        return a.logical in integers
    return b.logical == "decimal" and a.logical in (*integers, "decimal")


def _null_tokens_guard(expr: pl.Expr, column: str, ctype: ColumnType, nulls: list[str]) -> pl.Expr:
    """Null tokens that would parse as a value (``0`` declared a null token …) stay null."""
    if not nulls:
        return expr
    if ctype.logical in ("text", "categorical"):
        return pl.when(pl.col(column).is_in(nulls)).then(None).otherwise(expr)
    parsed = pl.DataFrame({column: nulls}).select(parse_expr(column, ctype))[column]
    if parsed.null_count() == len(nulls):
        return expr
    return pl.when(pl.col(column).is_in(nulls)).then(None).otherwise(expr)


def apply_schema(
    table: str,
    frame: pl.DataFrame | Iterable[pl.DataFrame],
    hints: Mapping[str, Any] | None = None,
    null_values: Sequence[str] = DEFAULT_NULL_VALUES,
    *,
    stored: TableSchema | None = None,
    contract: ContractMode = "evolve",
    day_first: bool | None = None,
    categorical_limit: int = 256,
    source: str | None = None,
    load_id: str = "",
    row_offset: int = 0,
) -> TypedTable:
    """Type a raw frame: hinted columns get their declared type, the others an inferred one;
    compare with the stored schema under the contract; quarantine what does not fit.

    Args:
        table: the table name.
        frame: raw frame, text columns as read from the source; or its batches (an
            extraction), whose text is dictionary-encoded as each batch arrives, so a
            large table's text is never held whole as strings (see
            :mod:`featurepipe.schema.text`). The result is the same either way.
        hints: column name (as in the source, or normalized) to a type name or a hint with
            ``type`` and optional ``format`` and ``contract``.
        null_values: tokens that mean "no value" in text columns (matched exactly).
        stored: the table's stored schema, if any.
        contract: the table's contract mode; a hint's ``contract`` overrides it per column.
        day_first: order of ambiguous regional dates (``None``: such columns stay text).
        categorical_limit: most distinct values a categorical text column may have.
        source: the source name recorded in the quarantine (default: ``table``).
        load_id: the load id recorded in the quarantine.
        row_offset: rows of the source before this frame (for batches).

    Returns:
        The typed table with its schema and quarantine.

    Raises:
        SchemaError: a ``freeze`` contract is broken; the message names the table, columns,
            stored and new types. Nothing should be loaded.
    """
    if not isinstance(frame, pl.DataFrame):
        frame = encode_batches(frame)
    hints = dict(hints or {})
    options = InferenceOptions(day_first=day_first, categorical_limit=categorical_limit)
    nulls = list(null_values)
    names = unique_names(frame.columns)
    columns: list[_Column] = []
    inferred_types = infer_frame(frame, None, options, nulls)
    for original, name in names.items():
        inferred = inferred_types[original]
        hint = hints.get(original, hints.get(name))
        typed_hint = isinstance(hint, str) or getattr(hint, "type", None) is not None
        ctype = (
            _hint_type(hint, inferred, frame[original], nulls, options) if typed_hint else inferred
        )
        mode = getattr(hint, "contract", None) or contract
        columns.append(_Column(original, name, ctype, mode))
        if typed_hint and is_text(frame[original].dtype):
            columns[-1].checked = True
            columns[-1].reason = f"does not fit the hinted type {ctype.describe()}"

    changes = _enforce(table, columns, stored, contract)
    raw = frame.with_row_index(ROW, offset=row_offset + 1)
    try:
        typed = raw.select(
            ROW, *(_typed_expr(frame, c, nulls).alias(c.original) for c in columns if not c.drop)
        )
    except pl.exceptions.PolarsError as exc:
        raise SchemaError(
            f"table {table!r}: cannot type the columns {[c.original for c in columns]}: {exc}; "
            "check the hints in featurepipe.toml (a json column needs valid JSON values)"
        ) from exc
    quarantine, bad_rows, discarded = _quarantine(raw, typed, columns, nulls)
    if discarded:
        typed = typed.with_columns(
            pl.when(mask).then(None).otherwise(pl.col(c)).alias(c) for c, mask in discarded.items()
        )
    if bad_rows is not None:
        typed = typed.filter(~bad_rows)
    kept = [c for c in columns if not c.drop]
    typed = typed.drop(ROW).rename({c.original: c.name for c in kept})
    schema = _next_schema(table, kept, stored, load_id, changes)
    q = quarantine.with_columns(
        pl.lit(source or table).alias("source"),
        pl.lit(table).alias("table"),
        pl.lit(load_id).alias("load_id"),
    ).select(QUARANTINE_SCHEMA.names())
    if q.height:
        log.warning(
            "table %r: %d value(s) quarantined, %d row(s) held back (columns: %s)",
            table, q.height, frame.height - typed.height, ", ".join(q["column"].unique().sort()),
        )  # fmt: skip
    for change in changes:
        log.info("table %r: schema change: %s", table, change)
    return TypedTable(
        table=table,
        frame=typed,
        schema=schema,
        quarantine=q.sort("row", "column"),
        rows_in=frame.height,
        changes=tuple(changes),
    )


def _typed_expr(frame: pl.DataFrame, column: _Column, nulls: list[str]) -> pl.Expr:
    target = column.stored
    dtype = frame.schema[column.original]
    if column.ctype.empty:
        return pl.lit(None, dtype=target.dtype)
    if not is_text(dtype):  # typed at the source (SQL, Parquet, compact CSV integers)
        value = pl.col(column.original)
        cast = value.cast(target.dtype, strict=False)
        if not column.checked or dtype == target.dtype or dtype.is_nested():
            return cast
        # checked against another type: a value the cast changes (2 as a bool) does not fit
        return pl.when(cast.cast(dtype, strict=False) == value).then(cast).otherwise(None)
    expr = _text_expr(column, nulls)
    # dictionary-encoded text: parse each distinct value once
    return map_encoded(frame, column.original, expr) if is_encoded(dtype) else expr


def _text_expr(column: _Column, nulls: list[str]) -> pl.Expr:
    """The expression that types a raw text column."""
    target = column.stored
    parse = target if target.logical == "text" else column.ctype
    if parse.logical == "json":  # json_decode raises on a non-JSON value: keep those out
        raw = pl.col(column.original).str.strip_chars()
        shaped = raw.str.contains(r"^[\[{]") & ~pl.col(column.original).is_in(nulls)
        return pl.when(shaped).then(raw).otherwise(None).str.json_decode(parse.dtype)
    expr = _null_tokens_guard(parse_expr(column.original, parse), column.original, parse, nulls)
    return expr if parse.dtype == target.dtype else expr.cast(target.dtype)


def _enforce(
    table: str, columns: list[_Column], stored: TableSchema | None, contract: ContractMode
) -> list[str]:
    """Apply the contract to each column against the stored schema; return the changes."""
    if stored is None:
        if contract == "freeze":
            raise SchemaError(
                f"table {table!r}: contract 'freeze' but no schema is stored for it yet, so "
                "nothing can be checked and nothing was loaded. Load it once with contract "
                "'evolve' to store its schema, then freeze it."
            )
        return []
    changes: list[str] = []
    frozen: list[str] = []
    where = f"stored schema v{stored.version}"
    for column in columns:
        old = stored.columns.get(column.name)
        if old is None:
            if column.mode == "evolve":
                changes.append(f"added column {column.name} ({column.ctype.describe()})")
            elif column.mode == "freeze":
                frozen.append(f"new column {column.original!r} ({column.ctype.describe()})")
            else:
                column.drop = column.absent = column.checked = True
                column.reason = f"column {column.original!r} is not in the {where}"
                column.reason += f" (contract {column.mode})"
                column.discard = "row" if column.mode == "discard_row" else "value"
            continue
        new, have = column.ctype, old.type
        wider = widen(have, new)
        if _same(wider, have):
            column.target = have
            continue
        if column.mode == "evolve" or have.empty:
            changes.append(f"{column.name}: {have.describe()} → {wider.describe()}")
            column.target = wider
        elif column.mode == "freeze":
            frozen.append(
                f"column {column.original!r} is {new.describe()} here, {have.describe()} stored"
            )
        else:
            column.ctype = have
            column.checked = True
            column.reason = (
                f"does not fit {have.describe()} of the {where} (contract {column.mode})"
            )
            column.discard = "row" if column.mode == "discard_row" else "value"
    if frozen:
        raise SchemaError(
            f"table {table!r} breaks its 'freeze' contract against the {where}; nothing was "
            "loaded:\n  - " + "\n  - ".join(frozen) + "\nFix the source, or set contract = "
            f"'evolve' for the table or these columns in featurepipe.toml [sources.{table}]."
        )
    return changes


def _same(a: ColumnType, b: ColumnType) -> bool:
    return a.logical == b.logical and a.dtype == b.dtype


def _quarantine(
    raw: pl.DataFrame, typed: pl.DataFrame, columns: list[_Column], nulls: list[str]
) -> tuple[pl.DataFrame, pl.Series | None, dict[str, pl.Series]]:
    """Quarantine rows for checked columns: values present in ``raw`` but null when typed."""
    parts: list[pl.DataFrame] = []
    bad_rows: pl.Series | None = None
    discarded: dict[str, pl.Series] = {}
    for column in columns:
        if not column.checked:
            continue
        value = raw[column.original]
        present = value.is_not_null()
        if is_text(value.dtype) and nulls:
            present = present & ~value.is_in(nulls)
        if column.absent:
            failed = present
        else:
            failed = present & typed[column.original].is_null()
        if not failed.any():
            continue
        parts.append(
            raw.filter(failed).select(
                pl.col(ROW).cast(pl.Int64).alias("row"),
                pl.lit(column.original).alias("column"),
                pl.col(column.original).cast(pl.String).alias("value"),
                pl.lit(column.reason).alias("reason"),
            )
        )
        if column.discard == "value":
            if not column.absent:  # an absent column is dropped whole
                discarded[column.original] = failed
        else:
            bad_rows = failed if bad_rows is None else bad_rows | failed
    empty = pl.DataFrame(schema={"row": pl.Int64, "column": pl.String, "value": pl.String,
                                 "reason": pl.String})  # fmt: skip
    return pl.concat([empty, *parts]), bad_rows, discarded


def _next_schema(
    table: str,
    columns: list[_Column],
    stored: TableSchema | None,
    load_id: str,
    changes: list[str],
) -> TableSchema:
    current = dict(stored.columns) if stored else {}
    for column in columns:
        old = current.get(column.name)
        if old is None or not _same(old.type, column.stored):
            current[column.name] = ColumnSchema(column.name, column.original, column.stored)
    schema = TableSchema(table=table, columns=current, load_id=load_id, changes=tuple(changes))
    if stored is not None and schema.same_columns(stored):
        return replace(schema, version=stored.version)
    return replace(schema, version=(stored.version if stored else 0) + 1)
