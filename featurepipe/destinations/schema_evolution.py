"""How a load may change a stored table's schema: new columns, and types widened along the
lattice of ``featurepipe.schema.types`` (the ``evolve`` contract); ``freeze`` allows neither.

A column whose incoming type is narrower than the stored one (``int32`` into ``int64``)
is cast up to the stored type under either mode: the table does not change. A column
whose incoming type is wider (``int64`` into ``int32``, ``float`` into ``int64``, ``text``
into ``categorical``) widens the stored column under ``evolve``; when neither type holds
the other (``int64`` and ``uint64``), both go to the narrowest type that holds them
(``decimal(20,0)``). Each destination converts the stored values in the load's own
transaction, so the widening commits with the rows or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from ..errors import SchemaError
from ..schema.types import type_of_dtype, widen

__all__ = ["SchemaChange", "cast_columns", "schema_changes", "wider_type"]

# Logical types whose values every destination turns into the same text as polars does;
# a change between other types that only text could hold (a timestamp and a number) is
# refused rather than turning stored values into text each destination spells its own way.
_TEXT_EXACT = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint64", "decimal", "float", "text"}
    | {"categorical", "date"}
)


def wider_type(stored: pl.DataType, incoming: pl.DataType) -> pl.DataType | None:
    """The type a stored column needs to hold incoming values as well.

    Args:
        stored: the column's stored type.
        incoming: the type of the values about to be written.

    Returns:
        ``stored`` when it holds the incoming values (they are cast up to it), a wider
        type the column must take, or ``None`` when the change is off the lattice.
    """
    if incoming == stored or incoming == pl.Null:
        return stored
    if stored == pl.Null:  # a column loaded only with nulls takes any type exactly
        return incoming
    old, new = type_of_dtype(stored), type_of_dtype(incoming)
    wider = widen(old, new)
    if wider.logical == "text" and not {old.logical, new.logical} <= _TEXT_EXACT:
        return None
    dtype = wider.dtype
    if wider.logical == "float":  # widen keeps the first float's width; 32 bits hold less
        dtype = pl.Float32() if stored == incoming == pl.Float32 else pl.Float64()
    if dtype == stored:
        return stored
    return incoming if dtype == incoming else dtype


@dataclass(frozen=True)
class SchemaChange:
    """What a load does to a stored table's schema.

    Attributes:
        added: new columns, in incoming order.
        widened: stored columns that take a wider type, and that type.
        cast: incoming columns written in another type (the stored or widened one).
    """

    added: list[str] = field(default_factory=list)
    widened: dict[str, pl.DataType] = field(default_factory=dict)
    cast: dict[str, pl.DataType] = field(default_factory=dict)

    def schema(self, current: pl.Schema, incoming: pl.Schema) -> pl.Schema:
        """The table's schema after the load."""
        return pl.Schema(
            {**current, **self.widened, **{c: incoming[c] for c in self.added}},
        )


def schema_changes(
    table: str, current: pl.Schema, incoming: pl.Schema, schema_mode: str
) -> SchemaChange:
    """Compare the incoming rows' schema with the stored one under a schema contract.

    Args:
        table: table name, for messages.
        current: the stored table's schema (lineage columns included).
        incoming: the schema of the rows about to be written.
        schema_mode: ``evolve`` adds new columns and widens types; ``freeze`` refuses both
            (narrower incoming types are cast up under either mode).

    Returns:
        The columns added, the columns widened and the incoming columns to cast.

    Raises:
        SchemaError: a new column or a wider type under ``freeze``, or a type change off
            the lattice; names the columns. Nothing has been written.
    """
    added = [c for c in incoming if c not in current]
    widened: dict[str, pl.DataType] = {}
    cast: dict[str, pl.DataType] = {}
    refused: list[str] = []
    for column, dtype in incoming.items():
        if column not in current or dtype == current[column]:
            continue
        target = wider_type(current[column], dtype)
        if target is None:
            refused.append(f"{column} ({current[column]} -> {dtype})")
            continue
        if target != current[column]:
            widened[column] = target
        if target != dtype:
            cast[column] = target
    if refused:
        raise SchemaError(
            f"table {table!r}: columns changed type with no common wider type: "
            f"{', '.join(refused)}; nothing was written. Cast them to the stored type (or to "
            "text before the first load), or load into a new table."
        )
    if schema_mode == "freeze" and (added or widened):
        changes = [f"new column {c!r}" for c in added] + [
            f"column {c!r} widened ({current[c]} -> {t})" for c, t in widened.items()
        ]
        raise SchemaError(
            f"table {table!r}: {'; '.join(changes)} under schema contract 'freeze'; nothing "
            "was written. Drop or cast them, or set the table's schema contract to 'evolve'."
        )
    return SchemaChange(added, widened, cast)


def cast_columns(table: str, frame: pl.DataFrame, cast: dict[str, pl.DataType]) -> pl.DataFrame:
    """The frame with columns cast to the types they are written in (``SchemaChange.cast``).

    Raises:
        SchemaError: a value does not fit the type; names the table and column.
    """
    for column, dtype in cast.items():
        try:
            frame = frame.with_columns(pl.col(column).cast(dtype))
        except pl.exceptions.PolarsError as exc:
            raise SchemaError(
                f"table {table!r}, column {column!r}: {frame.schema[column]} values do not fit "
                f"the stored type {dtype}: {exc}; nothing was written. Cast the column first."
            ) from exc
    return frame
