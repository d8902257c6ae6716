"""PostgreSQL destination: bulk loads through COPY, each in one transaction.

Rows are streamed with ``COPY … FROM STDIN (FORMAT csv)``. An append or replace copies
straight into the table inside the load's transaction; a merge copies into a temporary
staging table, then deletes flagged keys and upserts (``INSERT … ON CONFLICT``) from it.
The rows, the table's stored polars schema (``_fp_tables``) and the load's record in
``_fp_loads`` (with the source's next state, when the caller gives it) commit together or
not at all; a table's version is the sequence number of its latest load.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import polars as pl
import psycopg
from psycopg import sql

from ..errors import DestinationError
from ..schema.mapping import from_destination, storage_type, to_destination
from .base import (
    LOAD_ID,
    LOADS_SCHEMA,
    LOADS_TABLE,
    CommittedState,
    Disposition,
    LoadResult,
    Rows,
    SchemaMode,
    check_load,
    check_table_name,
    require_versions,
    row_batches,
    schema_from_bytes,
    schema_to_bytes,
    table_not_found,
    with_lineage,
)
from .history import SUPERSEDED, ReadPlan, generation_start, history_name, plan_read, rows_name
from .postgres_sql import LOAD_SETTING, copy_rows, create_table, merge_rows, widen_column
from .schema_evolution import SchemaChange, cast_columns, schema_changes

__all__ = ["PostgresDestination"]

TABLES_TABLE = "_fp_tables"
ARCHIVE_TABLE = "_fp_archive"  # replaced generations of each table (see history.py)

_META = """
CREATE TABLE IF NOT EXISTS {loads} (
    seq bigserial PRIMARY KEY,
    load_id text NOT NULL,
    source text NOT NULL,
    table_name text NOT NULL,
    rows bigint NOT NULL,
    schema_version text NOT NULL,
    disposition text NOT NULL,
    state text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    extracted_at timestamptz,
    source_state text,
    UNIQUE (table_name, load_id)
);
CREATE TABLE IF NOT EXISTS {tables} (
    table_name text PRIMARY KEY, schema bytea NOT NULL, history_from bigint
);
CREATE TABLE IF NOT EXISTS {archive} (
    table_name text, first_seq bigint, last_seq bigint NOT NULL, schema bytea NOT NULL,
    PRIMARY KEY (table_name, first_seq)
);
"""
# columns added to the loads table later: created on tables made before them
_LOADS_ADDED = {"extracted_at": "timestamptz", "source_state": "text"}


class PostgresDestination:
    """Tables in one PostgreSQL schema.

    Args:
        url: ``postgresql://user@host:port/db``; the password comes from ``PGPASSWORD``
            or ``~/.pgpass``.
        schema: the schema holding the tables (created on first write).
        connect_timeout: seconds to wait for the server.
    """

    kind = "postgres"

    def __init__(self, url: str, schema: str = "public", connect_timeout: int = 10) -> None:
        self.url = url
        self.schema = schema
        self.connect_timeout = connect_timeout

    def _where(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, "", ""))

    def location(self, table: str) -> str:
        """``postgresql://user@host:port/db#schema.table`` (never a password)."""
        return f"{self._where()}#{self.schema}.{table}"

    def _id(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            connection = psycopg.connect(
                self.url,
                connect_timeout=self.connect_timeout,
                options="-c timezone=UTC",
                autocommit=True,  # transactions are explicit: db.transaction()
            )
        except psycopg.Error as exc:
            raise DestinationError(
                f"cannot connect to PostgreSQL at {self._where()}: {exc}".rstrip()
                + "; is the server running, and is destination.url right?"
            ) from exc
        try:
            with connection:
                yield connection
        except psycopg.errors.InsufficientPrivilege as exc:
            raise DestinationError(
                f"PostgreSQL at {self._where()}, schema {self.schema!r}: permission denied: "
                f"{str(exc).strip()}; load as the role that owns the schema's tables, or grant "
                "this user CREATE on the schema and INSERT on its tables (replace, merge and "
                "schema changes also need ownership), or choose another schema"
            ) from exc
        except psycopg.Error as exc:
            raise DestinationError(f"PostgreSQL at {self._where()}: {exc}") from exc
        finally:
            connection.close()

    def _meta_exists(self, db: psycopg.Connection[Any]) -> bool:
        row = db.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name IN (%s, %s)",
            (self.schema, LOADS_TABLE, TABLES_TABLE),
        ).fetchone()
        return bool(row and row[0] == 2)

    def tables(self) -> list[str]:
        """Names of the loaded tables."""
        with self._connect() as db:
            if not self._meta_exists(db):
                return []
            query = sql.SQL("SELECT table_name FROM {} ORDER BY 1").format(self._id(TABLES_TABLE))
            return [r[0] for r in db.execute(query)]

    def version(self, table: str) -> int | None:
        """The sequence number of the table's latest load, ``None`` if never loaded."""
        with self._connect() as db:
            return self._version(db, table)

    def _version(self, db: psycopg.Connection[Any], table: str) -> int | None:
        if not self._meta_exists(db):
            return None
        query = sql.SQL("SELECT max(seq) FROM {} WHERE table_name = %s").format(
            self._id(LOADS_TABLE)
        )
        row = db.execute(query, (table,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def versions(self, tables: Iterable[str]) -> dict[str, int]:
        """The latest version of each table.

        Raises:
            DestinationError: a table does not exist.
        """
        with self._connect() as db:
            return require_versions(tables, lambda t: self._version(db, t), self._not_found)

    def loads(self) -> pl.DataFrame:
        """The loads table: one row per committed load."""
        with self._connect() as db:
            if not self._meta_exists(db):
                return LOADS_SCHEMA.to_frame()
            query = sql.SQL(
                "SELECT load_id, source, table_name, rows, schema_version, disposition, seq, "
                "state, loaded_at, extracted_at FROM {} ORDER BY seq"
            ).format(self._id(LOADS_TABLE))
            self._upgrade_meta(db)
            rows = db.execute(query).fetchall()
        return pl.DataFrame(rows, schema=LOADS_SCHEMA, orient="row")

    def committed_state(self, table: str) -> CommittedState | None:
        """The source state the table's latest load carrying one committed with its rows."""
        with self._connect() as db:
            if not self._meta_exists(db):
                return None
            self._upgrade_meta(db)
            row = db.execute(
                sql.SQL(
                    "SELECT load_id, source_state FROM {} WHERE table_name = %s "
                    "AND source_state IS NOT NULL ORDER BY seq DESC LIMIT 1"
                ).format(self._id(LOADS_TABLE)),
                (table,),
            ).fetchone()
        return None if row is None else CommittedState(row[0], row[1])

    def write(
        self,
        table: str,
        frame: Rows,
        *,
        load_id: str,
        mode: Disposition = "replace",
        primary_key: Sequence[str] = (),
        delete_column: str | None = None,
        source: str = "",
        schema_version: str = "",
        schema_mode: SchemaMode = "evolve",
        extracted_at: datetime | None = None,
        source_state: str | None = None,
    ) -> LoadResult:
        """Load a frame in one PostgreSQL transaction (see ``Destination.write``).

        Raises:
            DestinationError: bad options, the server is unreachable, permission denied,
                or the write failed; the destination is unchanged.
            SchemaError: a value or schema change PostgreSQL cannot take; nothing was written.
        """
        sample = check_load(table, frame, mode, primary_key, delete_column)
        check_table_name(table)
        lineage = with_lineage(sample.head(0), load_id)
        stored = lineage.drop(delete_column) if delete_column else lineage
        with self._connect() as db:
            self._create_meta(db)
            with db.transaction():
                # one load per table at a time; the lock ends with the transaction
                db.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema}.{table}",)
                )
                done = db.execute(
                    sql.SQL("SELECT seq FROM {} WHERE table_name = %s AND load_id = %s").format(
                        self._id(LOADS_TABLE)
                    ),
                    (table, load_id),
                ).fetchone()
                if done:
                    return LoadResult(table, 0, int(done[0]), load_id, mode, skipped=True)
                db.execute("SELECT set_config(%s, %s, true)", (LOAD_SETTING, load_id))
                start = generation_start(self._loads_of(db, table))
                record = (load_id, source, table, frame.height, schema_version, mode)
                row = db.execute(
                    sql.SQL(
                        "INSERT INTO {} (load_id, source, table_name, rows, schema_version, "
                        "disposition, state, extracted_at, source_state) "
                        "VALUES (%s, %s, %s, %s, %s, %s, 'committed', %s, %s) RETURNING seq"
                    ).format(self._id(LOADS_TABLE)),
                    (*record, extracted_at, source_state),
                ).fetchone()
                seq = int(row[0]) if row else 0
                generation = (start, seq)
                schema, cast = self._prepare_table(
                    db, table, stored.schema, mode, schema_mode, generation
                )
                # the lineage columns are filled by their column defaults (the load id set
                # for the transaction, its start time), so COPY does not carry them
                encoded = (
                    to_destination(
                        "postgres",
                        table,
                        cast_columns(table, batch, cast) if cast else batch,
                        keep_dictionary=True,
                        batch_start=first,
                    )
                    for first, batch in row_batches(frame)
                )
                if mode == "merge":
                    merge_rows(
                        db,
                        self.schema,
                        table,
                        encoded,
                        primary_key,
                        delete_column,
                        schema,
                        generation,
                    )
                else:
                    copy_rows(db, self._id(table), encoded)
                db.execute(
                    sql.SQL(
                        "INSERT INTO {} AS t VALUES (%s, %s, %s) ON CONFLICT (table_name) "
                        "DO UPDATE SET schema = excluded.schema, "
                        "history_from = coalesce(t.history_from, excluded.history_from)"
                    ).format(self._id(TABLES_TABLE)),
                    (table, schema_to_bytes(schema), seq),
                )
        return LoadResult(table, frame.height, seq, load_id, mode)

    def _create_meta(self, db: psycopg.Connection[Any]) -> None:
        if self._meta_exists(db):
            self._upgrade_meta(db)
            return
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema}._fp",))
            db.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )
            db.execute(sql.SQL(_META).format(**self._meta_names()))

    def _upgrade_meta(self, db: psycopg.Connection[Any]) -> None:
        """Add the loads-table columns and the history the destination's first version lacked."""
        present = {
            (r[0], r[1])
            for r in db.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name IN (%s, %s, %s)",
                (self.schema, LOADS_TABLE, TABLES_TABLE, ARCHIVE_TABLE),
            )
        }
        missing = [c for c in _LOADS_ADDED if (LOADS_TABLE, c) not in present]
        history = (TABLES_TABLE, "history_from") in present
        if not missing and history and any(t == ARCHIVE_TABLE for t, _ in present):
            return
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema}._fp",))
            for column in missing:
                db.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                        self._id(LOADS_TABLE),
                        sql.Identifier(column),
                        sql.SQL(_LOADS_ADDED[column]),
                    )
                )
            db.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS history_from bigint").format(
                    self._id(TABLES_TABLE)
                )
            )
            db.execute(sql.SQL(_META).format(**self._meta_names()))

    def _meta_names(self) -> dict[str, sql.Composable]:
        return {
            "loads": self._id(LOADS_TABLE),
            "tables": self._id(TABLES_TABLE),
            "archive": self._id(ARCHIVE_TABLE),
        }

    def _exists(self, db: psycopg.Connection[Any], name: str) -> bool:
        row = db.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name = %s",
            (self.schema, name),
        ).fetchone()
        return bool(row and row[0])

    def _loads_of(self, db: psycopg.Connection[Any], table: str) -> list[tuple[int, str, str]]:
        query = sql.SQL(
            "SELECT seq, load_id, disposition FROM {} WHERE table_name = %s ORDER BY seq"
        ).format(self._id(LOADS_TABLE))
        return [(int(r[0]), r[1], r[2]) for r in db.execute(query, (table,))]

    def _stored_schema(self, db: psycopg.Connection[Any], table: str) -> pl.Schema | None:
        row = db.execute(
            sql.SQL("SELECT schema FROM {} WHERE table_name = %s").format(self._id(TABLES_TABLE)),
            (table,),
        ).fetchone()
        return None if row is None else schema_from_bytes(bytes(row[0]))

    def _prepare_table(
        self,
        db: psycopg.Connection[Any],
        table: str,
        incoming: pl.Schema,
        mode: str,
        schema_mode: str,
        generation: tuple[int | None, int],
    ) -> tuple[pl.Schema, dict[str, pl.DataType]]:
        """Create, replace, extend or widen the table for the incoming rows.

        Args:
            generation: the sequence numbers of the load that began the table's current
                generation (``None``: no table yet) and of this load.

        Returns:
            The schema the table ends with, and the incoming columns to cast to it.
        """
        current = self._stored_schema(db, table)
        start, seq = generation
        if current is None or start is None:
            create_table(db, self.schema, table, incoming)
            return incoming, {}
        if mode == "replace":  # keep the replaced rows as the archived generation
            change = SchemaChange()
            if schema_mode == "freeze":
                change = schema_changes(table, current, incoming, schema_mode)
            db.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(self._id(f"_fp_pk_{table}")))
            db.execute(
                sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    self._id(table), sql.Identifier(rows_name(start))
                )
            )
            db.execute(
                sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(self._id(ARCHIVE_TABLE)),
                (table, start, seq, schema_to_bytes(current)),
            )
            schema = incoming if schema_mode == "evolve" else current
            create_table(db, self.schema, table, schema)
            return schema, change.cast
        change = schema_changes(table, current, incoming, schema_mode)
        history = history_name(start)
        for name in [table, history] if self._exists(db, history) else [table]:
            for column in change.added:
                db.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                        self._id(name),
                        sql.Identifier(column),
                        sql.SQL(storage_type("postgres", incoming[column])),
                    )
                )
            for column, dtype in change.widened.items():
                widen_column(db, self.schema, name, column, current[column], dtype)
        return change.schema(current, incoming), change.cast

    def read(self, table: str, version: int | None = None) -> tuple[pl.LazyFrame, int]:
        """A table as of a load sequence number (the latest by default), and that number.

        Raises:
            DestinationError: the table does not exist, or the version cannot be read.
        """
        with self._connect() as db, db.transaction():
            # one snapshot for the loads and the rows
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            schema = self._stored_schema(db, table) if self._meta_exists(db) else None
            if schema is None:
                raise self._not_found(table)
            plan = self._plan_read(db, table, version)
            schema = plan.schema or schema
            columns = sql.SQL(", ").join(sql.Identifier(c) for c in schema)
            query = sql.SQL("SELECT {} FROM {}").format(columns, self._id(plan.rows_table))
            if plan.load_ids is not None:
                ids = sql.SQL(", ").join(sql.Literal(i) for i in plan.load_ids)
                where = sql.SQL(" WHERE {} IN ({})").format(sql.Identifier(LOAD_ID), ids)
                query += where
                if plan.history_table and self._exists(db, plan.history_table):
                    query += sql.SQL(" UNION ALL SELECT {} FROM {}{} AND {} > {}").format(
                        columns,
                        self._id(plan.history_table),
                        where,
                        sql.Identifier(SUPERSEDED),
                        sql.Literal(plan.version),
                    )
            buffer = bytearray()
            with (
                db.cursor() as cursor,
                cursor.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)) as copy,
            ):
                for data in copy:
                    buffer += data
        raw = pl.read_csv(
            bytes(buffer),
            has_header=False,
            new_columns=list(schema),
            schema={c: pl.String for c in schema},
        )
        return from_destination(raw, schema).lazy(), plan.version

    def _plan_read(self, db: psycopg.Connection[Any], table: str, version: int | None) -> ReadPlan:
        loads = self._loads_of(db, table)
        if not self._exists(db, ARCHIVE_TABLE):  # made before history was kept
            return plan_read(table, version, loads, [], None)
        archived = [
            (int(r[0]), int(r[1]), schema_from_bytes(bytes(r[2])))
            for r in db.execute(
                sql.SQL("SELECT first_seq, last_seq, schema FROM {} WHERE table_name = %s").format(
                    self._id(ARCHIVE_TABLE)
                ),
                (table,),
            )
        ]
        row = db.execute(
            sql.SQL("SELECT history_from FROM {} WHERE table_name = %s").format(
                self._id(TABLES_TABLE)
            ),
            (table,),
        ).fetchone()
        history_from = None if row is None or row[0] is None else int(row[0])
        return plan_read(table, version, loads, archived, history_from)

    def _not_found(self, table: str) -> DestinationError:
        return table_not_found(table, self.location(table))
