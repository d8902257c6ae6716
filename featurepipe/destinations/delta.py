"""The embedded default destination: one Delta Lake table per folder under ``warehouse/``.

Every load is one Delta commit that also carries a Delta transaction identifier
(``app_id = featurepipe/<table>/<load id>``), so the commit and the proof that the load
happened are one atomic step; a replay finds the identifier and is skipped. The loads
table ``_fp_loads`` is appended after the data commit (never ahead of the data) and
repaired on replay if a crash fell between the two. A load can carry its source's next
state in the same commit's metadata, so the state is never behind the data either.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction

from ..errors import DestinationError
from ..schema.mapping import to_destination
from .base import (
    LOAD_ID,
    LOADED_AT,
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
    table_not_found,
    with_lineage,
)
from .schema_evolution import SchemaChange, cast_columns, schema_changes
from .staged import categoricals_as_text

__all__ = ["LOADED_AT", "LOAD_ID", "DeltaDestination"]

_LOAD_KEY = "featurepipe.load_id"
_STATE_KEY = "featurepipe.source_state"
_EXTRACTED_KEY = "featurepipe.extracted_at"


def _commit_mode(commit: dict[str, Any]) -> str:
    """The write disposition a Delta commit's operation implies ('' if unknown)."""
    if commit.get("operation") == "MERGE":
        return "merge"
    mode = str((commit.get("operationParameters") or {}).get("mode", "")).lower()
    return {"append": "append", "overwrite": "replace"}.get(mode, "")


def _stored(data: pl.DataFrame, delete_column: str | None) -> pl.Schema:
    """The schema Delta stores for rows: categoricals as text, the delete flag dropped."""
    return pl.Schema(
        {
            c: pl.String() if isinstance(t, pl.Categorical | pl.Enum) else t
            for c, t in data.schema.items()
            if c != delete_column
        }
    )


def _plain(exc: BaseException) -> str:
    """An error's text on one line, without the terminal colours and indented lines of
    delta-rs error chains."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    return re.sub(r"\s*\n\s*", " ", text).strip()


def _arrow_stream(batches: Iterable[pl.DataFrame]) -> pa.RecordBatchReader:
    """Batches as one Arrow stream (deltalake reads it a batch at a time), in the first
    batch's Arrow schema."""
    frames = iter(batches)
    first = next(frames).to_arrow(compat_level=pl.CompatLevel.oldest())

    def rest() -> Iterator[pa.RecordBatch]:
        yield from first.to_batches()
        for rows in frames:
            yield from (
                rows.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(first.schema).to_batches()
            )

    return pa.RecordBatchReader.from_batches(first.schema, rest())


def _quote(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


class DeltaDestination:
    """A folder of Delta tables; each load is one atomic, idempotent Delta commit.

    Args:
        path: the warehouse folder (created on first write), or an ``s3://`` URI.
        storage_options: object-store options passed to deltalake (e.g. ``AWS_ENDPOINT_URL``).
    """

    kind = "delta"

    def __init__(self, path: str | Path, storage_options: dict[str, str] | None = None) -> None:
        self.path = path if isinstance(path, str) and "://" in path else Path(path)
        self.storage_options = storage_options or None

    def table_path(self, table: str) -> Path:
        """Folder of one table (local warehouses)."""
        return Path(self.path) / table

    def location(self, table: str) -> str:
        """Where a table lives: its folder or URI."""
        if isinstance(self.path, str):
            return f"{self.path.rstrip('/')}/{table}"
        return str(self.table_path(table).resolve())

    def _open(self, table: str) -> DeltaTable | None:
        try:
            return DeltaTable(self.location(table), storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as exc:
            raise DestinationError(
                f"table {table!r}: cannot open {self.location(table)}: {_plain(exc)}; is the "
                "store reachable, and are destination.path and storage_options right?"
            ) from exc

    def tables(self) -> list[str]:
        """Names of the tables that hold at least one commit (the loads table excluded)."""
        if isinstance(self.path, str):
            raise DestinationError(f"listing tables of {self.path} is only supported locally")
        if not self.path.is_dir():
            return []
        return sorted(
            p.name
            for p in self.path.iterdir()
            if (p / "_delta_log").is_dir() and p.name != LOADS_TABLE
        )

    def version(self, table: str) -> int | None:
        """The latest version of a table, or ``None`` if it does not exist."""
        delta = self._open(table)
        return None if delta is None else delta.version()

    def versions(self, tables: Iterable[str]) -> dict[str, int]:
        """The latest version of each table.

        Raises:
            DestinationError: a table does not exist.
        """
        return require_versions(tables, self.version, self._not_found)

    def loads(self) -> pl.DataFrame:
        """The loads table: one row per committed load."""
        delta = self._open(LOADS_TABLE)
        if delta is None:
            return LOADS_SCHEMA.to_frame()
        loads = pl.read_delta(delta)
        missing = [  # loads tables written before a column existed
            pl.lit(None, dtype).alias(c) for c, dtype in LOADS_SCHEMA.items() if c not in loads
        ]
        return loads.with_columns(missing).select(LOADS_SCHEMA.names()).sort("loaded_at")

    def committed_state(self, table: str) -> CommittedState | None:
        """The source state the table's latest load carrying one committed with its rows.

        If a crash fell between that commit and its row in the loads table, the row is
        written now.
        """
        delta = self._open(table)
        if delta is None:
            return None
        for limit in (20, None):  # the recent commits first; the whole log if need be
            history = delta.history(limit)
            commit = next((h for h in history if h.get(_STATE_KEY) is not None), None)
            if commit is not None or len(history) < (limit or 0):
                break
        if commit is None:
            return None
        load_id = str(commit[_LOAD_KEY])
        self._record_replayed(table, delta, load_id, "", "", "")
        return CommittedState(load_id, str(commit[_STATE_KEY]))

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
        """Load a frame as one Delta commit, adding ``_fp_load_id`` and ``_fp_loaded_at``.

        Args:
            table: table name (a folder under the warehouse).
            frame: the rows to load.
            load_id: the load's id; loading the same id into the same table again is skipped.
            mode: ``append`` adds the rows, ``replace`` swaps the table's content, ``merge``
                upserts on ``primary_key`` and deletes rows flagged in ``delete_column``.
            primary_key: key columns (``merge`` only).
            delete_column: boolean column; true deletes the row with that key (``merge``).
            source: the source the rows came from, recorded in the loads table.
            schema_version: the schema version the rows follow, recorded in the loads table.
            schema_mode: ``evolve`` adds new columns; ``freeze`` refuses any schema change.
            extracted_at: when the rows were extracted, recorded in the loads table.
            source_state: the source's next state, committed in the same Delta commit
                (its metadata); :meth:`committed_state` reads it back.

        Returns:
            What was loaded, and the table version after it.

        Raises:
            DestinationError: bad options or the write failed; the table is left as it was.
            SchemaError: the schema change is not allowed; nothing was written.
        """
        sample = check_load(table, frame, mode, primary_key, delete_column)
        check_table_name(table)  # the loads table lives beside the tables
        delta = self._open(table)
        app_id = f"featurepipe/{table}/{load_id}"
        if delta is not None and delta.transaction_version(app_id) is not None:
            version = self._record_replayed(
                table, delta, load_id, mode, source, schema_version, frame.height
            )
            return LoadResult(table, 0, version, load_id, mode, skipped=True)

        current = None if delta is None else self._schema(delta)
        loaded_at = datetime.now(UTC)
        change = SchemaChange()

        def prepare(rows: pl.DataFrame, first: int | None = None) -> pl.DataFrame:
            """The rows as Delta stores them, with their lineage."""
            if current is not None:  # an all-null column takes the stored type
                nulls = [c for c, t in rows.schema.items() if t == pl.Null and c in current]
                rows = rows.with_columns(pl.col(c).cast(current[c]) for c in nulls)
            # categoricals stay dictionaries for Parquet; Delta stores them as strings
            encoded = to_destination("delta", table, rows, keep_dictionary=True, batch_start=first)
            return cast_columns(
                table, with_lineage(encoded, load_id, loaded_at, dictionary=True), change.cast
            )

        stored = _stored(prepare(sample.head(0)), delete_column)
        if current is not None and (mode != "replace" or schema_mode == "freeze"):
            change = schema_changes(table, current, stored, schema_mode)
            stored = _stored(prepare(sample.head(0)), delete_column)  # cast as stored
        added = bool(change.added)
        metadata = {_LOAD_KEY: load_id}
        if extracted_at is not None:
            metadata[_EXTRACTED_KEY] = extracted_at.isoformat()
        if source_state is not None:
            metadata[_STATE_KEY] = source_state
        commit = CommitProperties(
            custom_metadata=metadata, app_transactions=[Transaction(app_id=app_id, version=0)]
        )
        batches = (prepare(rows, first) for first, rows in row_batches(frame))
        try:
            if delete_column and delta is None:  # a first merge: nothing to delete yet
                batches = (
                    b.filter(~pl.col(delete_column).fill_null(False)).drop(delete_column)
                    for b in batches
                )
            if change.widened and delta is not None:  # rewrites the table: all in memory
                data = pl.concat(batches, how="vertical_relaxed")
                merge = (primary_key, delete_column) if mode == "merge" else None
                self._rewrite(
                    delta, table, categoricals_as_text(data), change.widened, merge, commit
                )
            elif mode == "merge" and delta is not None:
                strings = (categoricals_as_text(b) for b in batches)
                self._merge(delta, strings, primary_key, delete_column, added, commit)
            elif delta is not None and current == stored and isinstance(self.path, Path):
                self._commit_parquet(delta, table, batches, mode == "replace", commit)
            else:
                overwrite = mode == "replace"
                options: dict[str, Any] = {"commit_properties": commit}
                if delta is not None and (overwrite or added):
                    options["schema_mode"] = "overwrite" if overwrite else "merge"
                write_deltalake(
                    self.location(table),
                    _arrow_stream(categoricals_as_text(b) for b in batches),
                    mode="overwrite" if overwrite else "append",
                    storage_options=self.storage_options,
                    **options,
                )
            version = self._open_existing(table).version()
        except (DeltaError, OSError, pl.exceptions.PolarsError, pa.ArrowException) as exc:
            raise DestinationError(
                f"table {table!r}: could not write to {self.location(table)}: {_plain(exc)}; "
                "the table is unchanged. Check that the location is writable, has space and "
                "is reachable."
            ) from exc
        self._record(
            load_id, source, table, frame.height, schema_version, mode, version, extracted_at
        )
        return LoadResult(table, frame.height, version, load_id, mode)

    def _commit_parquet(
        self,
        delta: DeltaTable,
        table: str,
        batches: Iterable[pl.DataFrame],
        overwrite: bool,
        commit: CommitProperties,
    ) -> None:
        """Append to or replace an existing local table whose schema the rows match: polars
        writes a Parquet file per batch (faster than deltalake's writer), then one Delta
        commit adds them all. Files left by a failure or a crash before the commit are not
        part of the table: they are removed here, or by vacuum after a crash."""
        adds: list[AddAction | RemoveAction] = []
        written: list[Path] = []
        try:
            for rows in batches:
                name = f"part-{uuid.uuid4()}-c000.zstd.parquet"
                file = self.table_path(table) / name
                written.append(file)
                rows.write_parquet(file)
                stats = json.dumps({"numRecords": rows.height})
                now = int(time.time() * 1000)
                adds.append(AddAction(name, file.stat().st_size, {}, now, True, stats))
            how = "overwrite" if overwrite else "append"
            delta.create_write_transaction(adds, how, delta.schema(), commit_properties=commit)
        except BaseException:
            for file in written:  # not committed: nothing refers to them
                file.unlink(missing_ok=True)
            raise

    def _rewrite(
        self,
        delta: DeltaTable,
        table: str,
        data: pl.DataFrame,
        widened: dict[str, pl.DataType],
        merge: tuple[Sequence[str], str | None] | None,
        commit: CommitProperties,
    ) -> None:
        """Widen stored columns: the table rewritten in one commit, its rows cast to the
        wider types and the batch appended, or merged in on ``merge`` (primary key, delete
        column). Delta cannot change a column's type in place; this reads and writes the
        whole table, once per widening."""
        rows = pl.read_delta(delta).with_columns(pl.col(c).cast(t) for c, t in widened.items())
        if merge is None:
            rows = pl.concat([rows, data], how="diagonal")
        else:  # matched rows keep the stored values of columns the batch lacks
            keys, delete_column = list(merge[0]), merge[1]
            kept = rows.join(data.select(keys), on=keys, how="anti")
            if delete_column is not None:
                data = data.filter(~pl.col(delete_column).fill_null(False)).drop(delete_column)
            missing = [c for c in rows.columns if c not in data.columns]
            if missing:
                data = data.join(rows.select(*keys, *missing), on=keys, how="left")
            rows = pl.concat([kept, data], how="diagonal")
        rows.write_delta(
            self.location(table),
            mode="overwrite",
            storage_options=self.storage_options,
            delta_write_options={"commit_properties": commit, "schema_mode": "overwrite"},
        )

    def _merge(
        self,
        delta: DeltaTable,
        batches: Iterable[pl.DataFrame],
        primary_key: Sequence[str],
        delete_column: str | None,
        merge_schema: bool,
        commit: CommitProperties,
    ) -> None:
        source = _arrow_stream(batches)
        on = " AND ".join(f"t.{_quote(k)} = s.{_quote(k)}" for k in primary_key)
        columns = {c: f"s.{_quote(c)}" for c in source.schema.names if c != delete_column}
        merger = delta.merge(
            source,
            predicate=on,
            source_alias="s",
            target_alias="t",
            merge_schema=merge_schema,
            commit_properties=commit,
        )
        if delete_column is None:
            merger = merger.when_matched_update(columns).when_not_matched_insert(columns)
        else:
            keep = f"s.{_quote(delete_column)} IS NOT TRUE"
            merger = (
                merger.when_matched_delete(predicate=f"s.{_quote(delete_column)} IS TRUE")
                .when_matched_update(columns, predicate=keep)
                .when_not_matched_insert(columns, predicate=keep)
            )
        merger.execute()

    @staticmethod
    def _schema(delta: DeltaTable) -> pl.Schema:
        arrow = pa.schema(delta.schema().to_arrow())
        # from_batches, not empty_table(): that one imports pandas (0.4 s on a first write)
        return pl.from_arrow(pa.Table.from_batches([], schema=arrow)).schema  # type: ignore[union-attr]

    def _open_existing(self, table: str) -> DeltaTable:
        delta = self._open(table)
        if delta is None:
            raise self._not_found(table)
        return delta

    def _record(
        self,
        load_id: str,
        source: str,
        table: str,
        rows: int,
        schema_version: str,
        mode: str,
        version: int,
        extracted_at: datetime | None,
    ) -> None:
        row = pl.DataFrame(
            [
                {
                    "load_id": load_id,
                    "source": source,
                    "table": table,
                    "rows": rows,
                    "schema_version": schema_version,
                    "disposition": mode,
                    "version": version,
                    "state": "committed",
                    "loaded_at": datetime.now(UTC),
                    "extracted_at": extracted_at,
                }
            ],
            schema=LOADS_SCHEMA,
        )
        try:
            row.write_delta(
                self.location(LOADS_TABLE),
                mode="append",
                storage_options=self.storage_options,
                delta_write_options={"schema_mode": "merge"},  # older tables lack columns
            )
        except (DeltaError, OSError) as exc:
            raise DestinationError(
                f"table {table!r}: load {load_id} committed as version {version}, but the loads "
                f"table could not be written: {exc}; rerun the load to record it"
            ) from exc

    def _record_replayed(
        self,
        table: str,
        delta: DeltaTable,
        load_id: str,
        mode: str,
        source: str,
        schema_version: str,
        rows: int | None = None,
    ) -> int:
        """The version a replayed load committed; records it if a crash skipped that.

        Options left empty (``mode``, ``source``, ``schema_version``) are taken from the
        commit and the table's last recorded load; ``rows`` (the batch's row count, as
        the load itself records it) when not given, from the rows carrying the load id.
        """
        loads = self.loads().filter(pl.col("table") == table)
        done = loads.filter(pl.col("load_id") == load_id)
        if done.height:
            return int(done["version"][0])
        commit = next(
            (h for h in delta.history() if h.get(_LOAD_KEY) == load_id),
            {"version": delta.version()},
        )
        version = int(commit["version"])
        if rows is None:
            scan = pl.scan_delta(
                self.location(table), version=version, storage_options=self.storage_options
            )
            rows = scan.filter(pl.col(LOAD_ID) == load_id).select(pl.len()).collect().item()
        last = loads.tail(1).to_dicts()[0] if loads.height else {}
        extracted = commit.get(_EXTRACTED_KEY)
        self._record(
            load_id,
            source or last.get("source") or table,
            table,
            rows,
            schema_version or last.get("schema_version") or "",
            mode or _commit_mode(commit) or last.get("disposition", ""),
            version,
            datetime.fromisoformat(str(extracted)) if extracted else None,
        )
        return version

    def read(self, table: str, version: int | None = None) -> tuple[pl.LazyFrame, int]:
        """A table as of a version (the latest by default), and the version read.

        Raises:
            DestinationError: the table or the version does not exist.
        """
        delta = self._open(table)
        if delta is None:
            raise self._not_found(table)
        try:
            if version is not None:
                delta.load_as_version(version)
            return pl.scan_delta(delta), delta.version()
        except (DeltaError, OverflowError) as exc:
            raise DestinationError(
                f"table {table!r} at version {version}: {exc}; versions 0..{self.version(table)}"
                " exist (vacuumed versions cannot be read)"
            ) from exc

    def _not_found(self, table: str) -> DestinationError:
        return table_not_found(table, self.path)
