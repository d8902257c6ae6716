"""Editing rules applied to typed frames: identifier names, trims and de-duplication."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from .errors import SchemaError
from .schema.names import normalize_name, unique_names

__all__ = ["CleanTable", "clean_table", "normalize_name"]


@dataclass(frozen=True)
class CleanTable:
    """A cleaned frame and what cleaning did to it.

    Attributes:
        table: table name.
        frame: the cleaned frame.
        renamed: original column name to its normalized name, for renamed columns only.
        duplicates_removed: rows dropped because an earlier row had the same primary key.
    """

    table: str
    frame: pl.DataFrame
    renamed: dict[str, str]
    duplicates_removed: int


def clean_table(table: str, frame: pl.DataFrame, primary_key: Sequence[str] = ()) -> CleanTable:
    """Normalize column names, trim text values and drop duplicate primary keys.

    Duplicates keep the last row seen for a key (the latest version of a record)
    and are counted, never dropped silently.

    Args:
        table: table name, for messages.
        frame: typed frame.
        primary_key: normalized names of the key columns; empty for none.

    Returns:
        The cleaned table.

    Raises:
        SchemaError: a primary-key column is missing, or holds nulls.
    """
    names = unique_names(frame.columns)
    frame = frame.rename(names).with_columns(pl.col(pl.String).str.strip_chars())
    duplicates = 0
    if primary_key:
        missing = [c for c in primary_key if c not in frame.columns]
        if missing:
            raise SchemaError(
                f"table {table!r}: primary key column(s) {missing} not found; "
                f"columns are {frame.columns}. Fix `primary_key` in featurepipe.toml."
            )
        nulls = frame.select(pl.any_horizontal(pl.col(primary_key).is_null()).sum()).item()
        if nulls:
            raise SchemaError(
                f"table {table!r}: {nulls} row(s) have a null in primary key {list(primary_key)}; "
                "a key must identify every row."
            )
        deduped = frame.unique(subset=list(primary_key), keep="last", maintain_order=True)
        duplicates = frame.height - deduped.height
        frame = deduped
    return CleanTable(
        table=table,
        frame=frame,
        renamed={old: new for old, new in names.items() if old != new},
        duplicates_removed=duplicates,
    )
