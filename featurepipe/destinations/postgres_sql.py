"""The SQL statements a PostgreSQL load runs inside its transaction: create and widen a
table, stream rows in with ``COPY``, and merge them by primary key through a staging table."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from ..schema.mapping import storage_type
from .base import LOAD_ID, LOADED_AT
from .history import SUPERSEDED, history_name

__all__ = ["COPY_ROWS", "LOAD_SETTING", "copy_rows", "create_table", "merge_rows", "widen_column"]

COPY_ROWS = 200_000  # rows per CSV chunk streamed into COPY
LOAD_SETTING = "featurepipe.load_id"  # set for each load's transaction only
_DEFAULTS = {
    LOAD_ID: sql.SQL(" NOT NULL DEFAULT current_setting({})").format(sql.Literal(LOAD_SETTING)),
    LOADED_AT: sql.SQL(" NOT NULL DEFAULT now()"),  # the load's transaction start
}


def create_table(
    db: psycopg.Connection[Any], schema_name: str, name: str, schema: pl.Schema
) -> None:
    """Create ``schema_name.name`` with these columns (lineage columns filled by defaults)."""
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(
            sql.Identifier(c),
            sql.SQL(storage_type("postgres", t)),
            _DEFAULTS.get(c, sql.SQL("")),
        )
        for c, t in schema.items()
    )
    db.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            sql.Identifier(schema_name, name), columns
        )
    )


def widen_column(
    db: psycopg.Connection[Any],
    schema_name: str,
    table: str,
    column: str,
    stored: pl.DataType,
    wider: pl.DataType,
) -> None:
    """Change a column to a wider type, converting its values (in the load's transaction)."""
    old, new = storage_type("postgres", stored), storage_type("postgres", wider)
    if old == new:  # int8 -> int16 (both smallint), categorical -> text: the schema only
        return
    # PostgreSQL casts boolean to integer only; numbers go through it
    via = sql.SQL("::integer") if stored == pl.Boolean and new != "text" else sql.SQL("")
    db.execute(
        sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}{}::{}").format(
            sql.Identifier(schema_name, table),
            sql.Identifier(column),
            sql.SQL(new),
            sql.Identifier(column),
            via,
            sql.SQL(new),
        )
    )


def copy_rows(
    db: psycopg.Connection[Any],
    target: sql.Composable,
    batches: Iterable[pl.DataFrame],
) -> list[str]:
    """COPY batches of rows (of the same columns) into ``target``; returns the columns."""
    batches = iter(batches)
    first = next(batches)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in first.columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(target, columns)
    with db.cursor() as cursor, cursor.copy(statement) as copy:
        for rows in itertools.chain([first], batches):
            for chunk in rows.iter_slices(COPY_ROWS):
                buffer = io.BytesIO()
                chunk.write_csv(buffer, include_header=False)
                copy.write(buffer.getbuffer())
    return first.columns


def merge_rows(
    db: psycopg.Connection[Any],
    schema_name: str,
    table: str,
    batches: Iterable[pl.DataFrame],
    primary_key: Sequence[str],
    delete_column: str | None,
    schema: pl.Schema,
    generation: tuple[int | None, int],
) -> None:
    """Upsert batches by ``primary_key`` through a temporary staging table (rows whose
    ``delete_column`` is true are deleted); rows it replaces go to the history."""
    staging = sql.Identifier(f"_fp_staging_{table}")
    db.execute(
        sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            staging, sql.Identifier(schema_name, table)
        )
    )
    flag = sql.Identifier(delete_column) if delete_column else None
    if flag is not None:
        db.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} boolean").format(staging, flag))
    copied = copy_rows(db, staging, batches)
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in primary_key)
    index = sql.Identifier(f"_fp_pk_{table}")
    db.execute(
        sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
            index, sql.Identifier(schema_name, table), keys
        )
    )
    match = sql.SQL(" AND ").join(
        sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in primary_key
    )
    start, seq = generation
    if start is not None:  # the rows this merge updates or deletes go to the history
        history = history_name(start)
        create_table(db, schema_name, history, pl.Schema({**schema, SUPERSEDED: pl.Int64()}))
        stored = sql.SQL(", ").join(sql.Identifier(c) for c in schema)
        db.execute(
            sql.SQL("INSERT INTO {} ({}, {}) SELECT {}, %s FROM {} AS t JOIN {} AS s ON {}").format(
                sql.Identifier(schema_name, history),
                stored,
                sql.Identifier(SUPERSEDED),
                sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in schema),
                sql.Identifier(schema_name, table),
                staging,
                match,
            ),
            (seq,),
        )
    kept: sql.Composable = sql.SQL("TRUE")
    if flag is not None:
        db.execute(
            sql.SQL("DELETE FROM {} AS t USING {} AS s WHERE {} AND s.{} IS TRUE").format(
                sql.Identifier(schema_name, table), staging, match, flag
            )
        )
        kept = sql.SQL("s.{} IS NOT TRUE").format(flag)
    names = [c for c in copied if c != delete_column] + [LOAD_ID, LOADED_AT]
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in names)
    updates = sql.SQL(", ").join(
        sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c))
        for c in names
        if c not in primary_key
    )
    db.execute(
        sql.SQL(
            "INSERT INTO {} ({}) SELECT {} FROM {} AS s WHERE {} ON CONFLICT ({}) DO UPDATE SET {}"
        ).format(sql.Identifier(schema_name, table), columns, columns, staging, kept, keys, updates)
    )
