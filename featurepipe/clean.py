"""Editing rules applied to typed frames: identifier names, trims and de-duplication."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from .errors import SchemaError

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


def normalize_name(name: str) -> str:
    """A destination-safe snake_case identifier: ``"Dep Time (min)"`` → ``dep_time_min``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", ascii_name)
    snake = re.sub(r"[^0-9a-zA-Z]+", "_", snake).strip("_").lower()
    if not snake:
        snake = "column"
    return f"_{snake}" if snake[0].isdigit() else snake


def _unique_names(columns: Sequence[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    taken: set[str] = set()
    for column in columns:
        base = normalize_name(column)
        name, n = base, 1
        while name in taken:  # deterministic: suffixes follow column order
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        names[column] = name
    return names


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
    names = _unique_names(frame.columns)
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
