"""SQLite destination: one database file; each load is one SQLite transaction.

The rows, the table's stored polars schema (``_fp_tables``) and the load's record in
``_fp_loads`` (with the source's next state, when the caller gives it) commit together or
not at all. A table's version is the sequence number
of its latest load in ``_fp_loads``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

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
from .schema_evolution import SchemaChange, cast_columns, schema_changes

__all__ = ["SqliteDestination"]

TABLES_TABLE = "_fp_tables"
ARCHIVE_TABLE = "_fp_archive"  # replaced generations of each table (see history.py)

_META = f"""
CREATE TABLE IF NOT EXISTS {LOADS_TABLE} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    load_id TEXT NOT NULL,
    source TEXT NOT NULL,
    table_name TEXT NOT NULL,
    rows INTEGER NOT NULL,
    schema_version TEXT NOT NULL,
    disposition TEXT NOT NULL,
    state TEXT NOT NULL,
    loaded_at TEXT NOT NULL,
    extracted_at TEXT,
    source_state TEXT,
    UNIQUE (table_name, load_id)
);
CREATE TABLE IF NOT EXISTS {TABLES_TABLE} (
    table_name TEXT PRIMARY KEY, schema BLOB NOT NULL, history_from INTEGER
);
CREATE TABLE IF NOT EXISTS {ARCHIVE_TABLE} (
    table_name TEXT, first_seq INTEGER, last_seq INTEGER NOT NULL, schema BLOB NOT NULL,
    PRIMARY KEY (table_name, first_seq)
);
"""

# columns added to the loads table later: created on tables made before them
_LOADS_ADDED = ("extracted_at", "source_state")

_RAW = {"INTEGER": pl.Int64(), "REAL": pl.Float64(), "TEXT": pl.String(), "BLOB": pl.Binary()}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqliteDestination:
    """Tables in one SQLite database file.

    Args:
        path: the database file (created with its folder on first write).
    """

    kind = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def location(self, table: str) -> str:
        """The database file (tables share it)."""
        return str(self.path.resolve())

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        if not write and not self.path.exists():
            raise DestinationError(
                f"SQLite database {self.path} does not exist; run the ingest step "
                "(featurepipe run, or notebooks/01_ingest) first."
            )
        try:
            if write:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        except (sqlite3.Error, OSError) as exc:
            raise DestinationError(
                f"cannot open SQLite database {self.path}: {exc}; check destination.path: "
                "its folder must be a directory you can write to"
            ) from exc
        try:
            if write:
                connection.executescript(_META)
                _upgrade_meta(connection)
            yield connection
        except sqlite3.Error as exc:
            raise DestinationError(f"SQLite database {self.path}: {exc}") from exc
        finally:
            connection.close()

    def tables(self) -> list[str]:
        """Names of the loaded tables."""
        if not self.path.exists():
            return []
        with self._connect(write=False) as db:
            if not _has_meta(db):
                return []
            return [r[0] for r in db.execute(f"SELECT table_name FROM {TABLES_TABLE} ORDER BY 1")]

    def version(self, table: str) -> int | None:
        """The sequence number of the table's latest load, ``None`` if never loaded."""
        if not self.path.exists():
            return None
        with self._connect(write=False) as db:
            return _version(db, table)

    def versions(self, tables: Iterable[str]) -> dict[str, int]:
        """The latest version of each table.

        Raises:
            DestinationError: a table does not exist.
        """
        return require_versions(tables, self.version, self._not_found)

    def loads(self) -> pl.DataFrame:
        """The loads table: one row per committed load."""
        if not self.path.exists():
            return LOADS_SCHEMA.to_frame()
        with self._connect(write=False) as db:
            if not _has_meta(db):
                return LOADS_SCHEMA.to_frame()
            extracted = "extracted_at" if _loads_columns(db) >= {"extracted_at"} else "NULL"
            rows = db.execute(
                "SELECT load_id, source, table_name, rows, schema_version, disposition, seq, "
                f"state, loaded_at, {extracted} FROM {LOADS_TABLE} ORDER BY seq"
            ).fetchall()
        raw = pl.DataFrame(
            rows, schema=LOADS_SCHEMA.names(), orient="row", infer_schema_length=None
        )
        return raw.with_columns(
            pl.col(c).cast(pl.String).str.to_datetime(time_unit="us", time_zone="UTC")
            for c in ("loaded_at", "extracted_at")
        ).cast(dict(LOADS_SCHEMA))  # type: ignore[arg-type]

    def committed_state(self, table: str) -> CommittedState | None:
        """The source state the table's latest load carrying one committed with its rows."""
        if not self.path.exists():
            return None
        with self._connect(write=False) as db:
            if not _has_meta(db) or "source_state" not in _loads_columns(db):
                return None
            row = db.execute(
                f"SELECT load_id, source_state FROM {LOADS_TABLE} WHERE table_name = ? "
                "AND source_state IS NOT NULL ORDER BY seq DESC LIMIT 1",
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
        """Load a frame in one SQLite transaction (see ``Destination.write``).

        Raises:
            DestinationError: bad options, or the write failed; the database is unchanged.
            SchemaError: a value or schema change SQLite cannot take; nothing was written.
        """
        sample = check_load(table, frame, mode, primary_key, delete_column)
        check_table_name(table)
        loaded_at = datetime.now(UTC)
        lineage = with_lineage(sample.head(0), load_id, loaded_at)
        stored = lineage.drop(delete_column) if delete_column else lineage
        with self._connect(write=True) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                done = db.execute(
                    f"SELECT seq FROM {LOADS_TABLE} WHERE table_name = ? AND load_id = ?",
                    (table, load_id),
                ).fetchone()
                if done:
                    db.execute("ROLLBACK")
                    return LoadResult(table, 0, int(done[0]), load_id, mode, skipped=True)
                start = generation_start(_loads_of(db, table))
                cursor = db.execute(
                    f"INSERT INTO {LOADS_TABLE} (load_id, source, table_name, rows, "
                    "schema_version, disposition, state, loaded_at, extracted_at, "
                    "source_state) VALUES (?, ?, ?, ?, ?, ?, 'committed', ?, ?, ?)",
                    (
                        load_id,
                        source,
                        table,
                        frame.height,
                        schema_version,
                        mode,
                        datetime.now(UTC).isoformat(),
                        extracted_at.astimezone(UTC).isoformat() if extracted_at else None,
                        source_state,
                    ),
                )
                version = int(cursor.lastrowid or 0)
                generation = (start, version)
                schema, cast = _prepare_table(
                    db, table, stored.schema, mode, schema_mode, generation
                )
                for first, batch in row_batches(frame):
                    rows = with_lineage(batch, load_id, loaded_at)
                    if cast:  # narrower incoming types written in the stored (or widened) type
                        rows = cast_columns(table, rows, cast)
                    encoded = to_destination("sqlite", table, rows, batch_start=first)
                    if mode == "merge" and start is not None:  # rows it updates or deletes
                        _keep_superseded(db, table, encoded, primary_key, schema, generation)
                    _insert(db, table, encoded, mode, primary_key, delete_column)
                db.execute(
                    f"INSERT INTO {TABLES_TABLE} AS t VALUES (?, ?, ?) ON CONFLICT (table_name) "
                    "DO UPDATE SET schema = excluded.schema, "
                    "history_from = coalesce(t.history_from, excluded.history_from)",
                    (table, schema_to_bytes(schema), version),
                )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(db)
                raise DestinationError(
                    f"table {table!r}: could not write to {self.path}: {exc}; the database is "
                    "unchanged. Check that the file and its folder are writable and have space."
                ) from exc
            except BaseException:
                _rollback(db)
                raise
        return LoadResult(table, frame.height, version, load_id, mode)

    def read(self, table: str, version: int | None = None) -> tuple[pl.LazyFrame, int]:
        """A table as of a load sequence number (the latest by default), and that number.

        Raises:
            DestinationError: the table does not exist, or the version cannot be read.
        """
        if not self.path.exists():
            raise self._not_found(table)
        with self._connect(write=False) as db:
            schema = _stored_schema(db, table) if _has_meta(db) else None
            if schema is None:
                raise self._not_found(table)
            plan = _plan_read(db, table, version)
            schema = plan.schema or schema
            columns = ", ".join(_q(c) for c in schema)
            query = f"SELECT {columns} FROM {_q(plan.rows_table)}"
            params: list[str | int] = []
            if plan.load_ids is not None:
                where = f" WHERE {_q(LOAD_ID)} IN ({', '.join('?' * len(plan.load_ids))})"
                query += where
                params = [*plan.load_ids]
                if plan.history_table and _exists(db, plan.history_table):
                    query += f" UNION ALL SELECT {columns} FROM {_q(plan.history_table)}{where}"
                    query += f" AND {_q(SUPERSEDED)} > ?"
                    params += [*plan.load_ids, plan.version]
            rows = db.execute(query, params).fetchall()
        raw_schema = {c: _RAW[storage_type("sqlite", t)] for c, t in schema.items()}
        raw = pl.DataFrame(rows, schema=raw_schema, orient="row")
        return from_destination(raw, schema).lazy(), plan.version

    def _not_found(self, table: str) -> DestinationError:
        return table_not_found(table, self.path)


def _rollback(db: sqlite3.Connection) -> None:
    # SQLite rolls back by itself on some errors (a full disk); then there is nothing to undo
    if db.in_transaction:
        db.execute("ROLLBACK")


def _has_meta(db: sqlite3.Connection) -> bool:
    found = db.execute(
        "SELECT count(*) FROM sqlite_master WHERE name IN (?, ?)", (LOADS_TABLE, TABLES_TABLE)
    ).fetchone()
    return bool(found and found[0] == 2)


def _loads_columns(db: sqlite3.Connection) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({LOADS_TABLE})")}


def _upgrade_meta(db: sqlite3.Connection) -> None:
    """Add the columns a database made by an older version lacks."""
    present = _loads_columns(db)
    added = [(LOADS_TABLE, c, "TEXT") for c in _LOADS_ADDED if c not in present]
    if "history_from" not in {r[1] for r in db.execute(f"PRAGMA table_info({TABLES_TABLE})")}:
        added.append((TABLES_TABLE, "history_from", "INTEGER"))
    for table, column, kind in added:
        try:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except sqlite3.OperationalError as exc:  # another writer added it first
            if "duplicate column" not in str(exc):
                raise


def _version(db: sqlite3.Connection, table: str) -> int | None:
    if not _has_meta(db):
        return None
    row = db.execute(
        f"SELECT max(seq) FROM {LOADS_TABLE} WHERE table_name = ?", (table,)
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _stored_schema(db: sqlite3.Connection, table: str) -> pl.Schema | None:
    row = db.execute(f"SELECT schema FROM {TABLES_TABLE} WHERE table_name = ?", (table,)).fetchone()
    return None if row is None else schema_from_bytes(row[0])


def _create(
    db: sqlite3.Connection, table: str, schema: pl.Schema, *, exist_ok: bool = False
) -> None:
    columns = ", ".join(f"{_q(c)} {storage_type('sqlite', t)}" for c, t in schema.items())
    maybe = "IF NOT EXISTS " if exist_ok else ""
    db.execute(f"CREATE TABLE {maybe}{_q(table)} ({columns})")


def _exists(db: sqlite3.Connection, name: str) -> bool:
    found = db.execute("SELECT count(*) FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    return bool(found and found[0])


def _loads_of(db: sqlite3.Connection, table: str) -> list[tuple[int, str, str]]:
    query = f"SELECT seq, load_id, disposition FROM {LOADS_TABLE} WHERE table_name = ? ORDER BY seq"
    return [(int(r[0]), r[1], r[2]) for r in db.execute(query, (table,))]


def _plan_read(db: sqlite3.Connection, table: str, version: int | None) -> ReadPlan:
    loads = _loads_of(db, table)
    if not _exists(db, ARCHIVE_TABLE):  # made before history was kept
        return plan_read(table, version, loads, [], None)
    archived = [
        (int(r[0]), int(r[1]), schema_from_bytes(r[2]))
        for r in db.execute(
            f"SELECT first_seq, last_seq, schema FROM {ARCHIVE_TABLE} WHERE table_name = ?",
            (table,),
        )
    ]
    row = db.execute(
        f"SELECT history_from FROM {TABLES_TABLE} WHERE table_name = ?", (table,)
    ).fetchone()
    history_from = None if row is None or row[0] is None else int(row[0])
    return plan_read(table, version, loads, archived, history_from)


def _keep_superseded(
    db: sqlite3.Connection,
    table: str,
    encoded: pl.DataFrame,
    primary_key: Sequence[str],
    schema: pl.Schema,
    generation: tuple[int | None, int],
) -> None:
    """Copy the rows a merge batch updates or deletes into the generation's history."""
    start, seq = generation
    assert start is not None  # noqa: S101 - only called on an existing table
    history = history_name(start)
    _create(db, history, pl.Schema({**schema, SUPERSEDED: pl.Int64()}), exist_ok=True)
    keys = ", ".join(_q(k) for k in primary_key)
    db.execute(f"CREATE TEMP TABLE _fp_keys ({keys})")
    db.executemany(
        f"INSERT INTO temp._fp_keys VALUES ({', '.join('?' * len(primary_key))})",
        encoded.select(primary_key).iter_rows(),
    )
    names = ", ".join(_q(c) for c in schema)
    match = " AND ".join(f"t.{_q(k)} = k.{_q(k)}" for k in primary_key)
    values = ", ".join(f"t.{_q(c)}" for c in schema)
    db.execute(
        f"INSERT INTO {_q(history)} ({names}, {_q(SUPERSEDED)}) SELECT {values}, ? "
        f"FROM {_q(table)} AS t JOIN temp._fp_keys AS k ON {match}",
        (seq,),
    )
    db.execute("DROP TABLE temp._fp_keys")


def _prepare_table(
    db: sqlite3.Connection,
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
    current = _stored_schema(db, table)
    start, seq = generation
    if current is None or start is None:
        _create(db, table, incoming)
        return incoming, {}
    if mode == "replace":  # keep the replaced rows as the archived generation
        change = SchemaChange()
        if schema_mode == "freeze":
            change = schema_changes(table, current, incoming, schema_mode)
        db.execute(f"DROP INDEX IF EXISTS {_q(f'_fp_pk_{table}')}")
        db.execute(f"ALTER TABLE {_q(table)} RENAME TO {_q(rows_name(start))}")
        db.execute(
            f"INSERT INTO {ARCHIVE_TABLE} VALUES (?, ?, ?, ?)",
            (table, start, seq, schema_to_bytes(current)),
        )
        schema = incoming if schema_mode == "evolve" else current
        _create(db, table, schema)
        return schema, change.cast
    change = schema_changes(table, current, incoming, schema_mode)
    history = history_name(start)
    for name in [table, history] if _exists(db, history) else [table]:
        for column in change.added:
            kind = storage_type("sqlite", incoming[column])
            db.execute(f"ALTER TABLE {_q(name)} ADD COLUMN {_q(column)} {kind}")
    schema = change.schema(current, incoming)
    if change.widened:
        _widen(db, table, current, schema)
        if _exists(db, history):
            extra = {SUPERSEDED: pl.Int64()}
            _widen(db, history, pl.Schema({**current, **extra}), pl.Schema({**schema, **extra}))
    return schema, change.cast


def _converted(column: str, stored: pl.DataType, wider: pl.DataType) -> str | None:
    """SQL turning a column's stored values into the wider type's form (None: unchanged)."""
    old, new = storage_type("sqlite", stored), storage_type("sqlite", wider)
    if stored == pl.Date and isinstance(wider, pl.Datetime):
        return f"{_q(column)} || ' 00:00:00.000000'"  # the text form of a datetime
    if old == new:
        return None
    if stored == pl.Boolean and wider == pl.String:  # spelled as polars casts it
        return f"CASE {_q(column)} WHEN 1 THEN 'true' WHEN 0 THEN 'false' END"
    return f"CAST({_q(column)} AS {new})"


def _widen(db: sqlite3.Connection, table: str, current: pl.Schema, schema: pl.Schema) -> None:
    """Give columns their wider types. SQLite cannot change a column's type, so the table
    is rebuilt with the values converted, inside the load's transaction (its key index
    is made again by the next merge)."""
    exprs = {c: _converted(c, current[c], t) for c, t in schema.items() if c in current}
    if all(e is None for e in exprs.values()):
        return  # same storage and form (int8 -> int64, categorical -> text): the schema only
    rebuilt = f"_fp_widen_{table}"
    db.execute(f"DROP TABLE IF EXISTS {_q(rebuilt)}")
    _create(db, rebuilt, schema)
    names = ", ".join(_q(c) for c in exprs)
    values = ", ".join(e or _q(c) for c, e in exprs.items())
    db.execute(f"INSERT INTO {_q(rebuilt)} ({names}) SELECT {values} FROM {_q(table)}")
    db.execute(f"DROP TABLE {_q(table)}")
    db.execute(f"ALTER TABLE {_q(rebuilt)} RENAME TO {_q(table)}")


def _insert(
    db: sqlite3.Connection,
    table: str,
    encoded: pl.DataFrame,
    mode: str,
    primary_key: Sequence[str],
    delete_column: str | None,
) -> None:
    rows = encoded
    if delete_column is not None:
        flagged = rows.filter(pl.col(delete_column).fill_null(False))
        where = " AND ".join(f"{_q(k)} = ?" for k in primary_key)
        db.executemany(
            f"DELETE FROM {_q(table)} WHERE {where}", flagged.select(primary_key).iter_rows()
        )
        rows = rows.filter(~pl.col(delete_column).fill_null(False)).drop(delete_column)
    names = ", ".join(_q(c) for c in rows.columns)
    marks = ", ".join("?" * rows.width)
    statement = f"INSERT INTO {_q(table)} ({names}) VALUES ({marks})"
    if mode == "merge":
        keys = ", ".join(_q(k) for k in primary_key)
        index = _q(f"_fp_pk_{table}")
        db.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {_q(table)} ({keys})")
        updates = ", ".join(
            f"{_q(c)} = excluded.{_q(c)}" for c in rows.columns if c not in primary_key
        )
        statement += f" ON CONFLICT ({keys}) DO UPDATE SET {updates}"
    db.executemany(statement, rows.iter_rows())
