"""What every destination offers: atomic, idempotent table loads, a loads table, pinned reads."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

import polars as pl

from ..errors import DestinationError
from .staged import StagedRows

__all__ = [
    "DISPOSITIONS",
    "LOADED_AT",
    "LOADS_SCHEMA",
    "LOADS_TABLE",
    "LOAD_ID",
    "CommittedState",
    "Destination",
    "Rows",
    "Disposition",
    "LoadResult",
    "SchemaMode",
    "check_load",
    "check_table_name",
    "pinned_load_ids",
    "require_versions",
    "schema_from_bytes",
    "schema_to_bytes",
    "row_batches",
    "table_not_found",
    "with_lineage",
]

LOAD_ID = "_fp_load_id"
LOADED_AT = "_fp_loaded_at"
LOADS_TABLE = "_fp_loads"

Disposition = Literal["append", "replace", "merge"]
DISPOSITIONS: tuple[str, ...] = ("append", "replace", "merge")
SchemaMode = Literal["evolve", "freeze"]
Rows = pl.DataFrame | StagedRows
"""What a load takes: a frame in memory, or rows staged on disk batch by batch."""

# One row per committed load; written in the load's own transaction (PostgreSQL,
# SQLite) or right after the data commit (Delta), so it is never ahead of the data.
LOADS_SCHEMA = pl.Schema(
    {
        "load_id": pl.String(),
        "source": pl.String(),
        "table": pl.String(),
        "rows": pl.Int64(),
        "schema_version": pl.String(),
        "disposition": pl.String(),
        "version": pl.Int64(),
        "state": pl.String(),
        "loaded_at": pl.Datetime("us", "UTC"),
        "extracted_at": pl.Datetime("us", "UTC"),
    }
)


@dataclass(frozen=True)
class CommittedState:
    """The source state a load committed together with its rows.

    Attributes:
        load_id: the load that committed it.
        state: the state as the caller encoded it (featurepipe: ``encode_state`` JSON).
    """

    load_id: str
    state: str


@dataclass(frozen=True)
class LoadResult:
    """One table load.

    Attributes:
        table: the table written.
        rows: rows in the batch (0 for a skipped replay).
        version: the table version after the load: a Delta version, or on PostgreSQL
            and SQLite the sequence number of the load in the loads table.
        load_id: the load id stamped on the rows.
        mode: the write disposition (``append``, ``replace`` or ``merge``).
        skipped: the load id was already committed for this table, so nothing was written.
    """

    table: str
    rows: int
    version: int
    load_id: str
    mode: str
    skipped: bool = False


class Destination(Protocol):
    """The protocol of a destination; ``open_destination`` returns one."""

    kind: str

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
        """Load a frame in one atomic transaction; a load id already committed is skipped.

        ``source_state`` (the source's next state) commits in the same transaction as the
        rows, so a crash before the state file is written loses nothing: the next run
        takes it back with :meth:`committed_state`. ``extracted_at`` goes to the loads table.
        Staged rows (:class:`StagedRows`) load a file at a time, in the same one transaction.
        """
        ...

    def committed_state(self, table: str) -> CommittedState | None:
        """The source state the table's latest load carrying one committed, if any."""
        ...

    def read(self, table: str, version: int | None = None) -> tuple[pl.LazyFrame, int]:
        """A table as of a version (the latest by default) and the version read."""
        ...

    def version(self, table: str) -> int | None:
        """The latest version of a table, ``None`` if it does not exist."""
        ...

    def versions(self, tables: Iterable[str]) -> dict[str, int]:
        """The latest version of each table, to pin reads and log them."""
        ...

    def tables(self) -> list[str]:
        """Names of the data tables (the loads table excluded)."""
        ...

    def loads(self) -> pl.DataFrame:
        """The loads table: one row per committed load (``LOADS_SCHEMA``)."""
        ...

    def location(self, table: str) -> str:
        """Where a table lives, for people and for dataset lineage."""
        ...


def check_load(
    table: str,
    frame: Rows,
    mode: str,
    primary_key: Sequence[str],
    delete_column: str | None,
) -> pl.DataFrame:
    """Refuse a load whose options do not fit the frame, before anything is written.

    Staged rows are checked by their columns only (staging already dropped repeated keys
    and refused null ones).

    Returns:
        The frame, or for staged rows an empty frame of their columns: the sample a
        destination plans its tables with.

    Raises:
        DestinationError: unknown disposition, a merge without a primary key, a key or
            delete column missing from the frame, or duplicate keys in a merge batch.
    """
    if mode not in DISPOSITIONS:
        raise DestinationError(
            f"table {table!r}: unknown write disposition {mode!r}; use one of {DISPOSITIONS}"
        )
    if not isinstance(frame, pl.DataFrame):
        frame = frame.head(0)
    reserved = [c for c in (LOAD_ID, LOADED_AT) if c in frame.columns]
    if reserved:
        raise DestinationError(
            f"table {table!r}: columns {reserved} are reserved for load lineage; rename them"
        )
    if mode != "merge":
        if delete_column is not None:
            raise DestinationError(
                f"table {table!r}: delete_column only applies to write_disposition 'merge'"
            )
        return frame
    if not primary_key:
        raise DestinationError(
            f"table {table!r}: write_disposition 'merge' needs a primary_key in featurepipe.toml"
        )
    missing = [c for c in [*primary_key, delete_column] if c is not None and c not in frame]
    if missing:
        raise DestinationError(f"table {table!r}: columns {missing} are not in the loaded frame")
    if delete_column is not None and frame.schema[delete_column] != pl.Boolean:
        raise DestinationError(
            f"table {table!r}: delete column {delete_column!r} must be boolean, "
            f"not {frame.schema[delete_column]}"
        )
    duplicates = frame.select(pl.struct(list(primary_key)).is_duplicated().sum()).item()
    if duplicates:
        raise DestinationError(
            f"table {table!r}: {duplicates} rows share a primary key {list(primary_key)} in "
            "one merge batch; deduplicate the batch (the clean step does) before loading"
        )
    nulls = frame.select(pl.any_horizontal(pl.col(primary_key).is_null()).sum()).item()
    if nulls:
        raise DestinationError(
            f"table {table!r}: {nulls} rows have a null in primary key {list(primary_key)}"
        )
    return frame


def row_batches(rows: Rows) -> Iterator[tuple[int | None, pl.DataFrame]]:
    """A load's rows in batches: a frame as one batch, staged rows a file at a time; each
    with the rows before it (``None`` for a frame: not a batch of a larger load), for
    ``to_destination``'s ``batch_start``."""
    if isinstance(rows, pl.DataFrame):
        yield None, rows
        return
    start = 0
    for batch in rows.batches():
        yield start, batch
        start += batch.height


def check_table_name(table: str) -> None:
    """Refuse a table name in the ``_fp_`` namespace of a destination's own tables
    (the loads table; on SQL destinations also the stored schemas, staging tables and
    key indexes).

    Raises:
        DestinationError: the name starts with ``_fp_``.
    """
    if table.startswith("_fp_"):
        raise DestinationError(f"table {table!r}: names starting with _fp_ are reserved")


def table_not_found(table: str, where: object) -> DestinationError:
    """The error for a table no load has created yet in ``where`` (a folder, file or URL)."""
    return DestinationError(
        f"table {table!r} not found in {where}; run the ingest step "
        "(featurepipe run, or notebooks/01_ingest) first."
    )


def require_versions(
    tables: Iterable[str],
    version: Callable[[str], int | None],
    not_found: Callable[[str], DestinationError],
) -> dict[str, int]:
    """The latest version of each table, as a destination's ``versions`` gives them.

    Args:
        tables: the table names.
        version: one table's latest version, ``None`` when it does not exist.
        not_found: the error for a table that does not exist.

    Raises:
        DestinationError: a table does not exist.
    """
    result = {}
    for table in tables:
        found = version(table)
        if found is None:
            raise not_found(table)
        result[table] = found
    return result


def with_lineage(
    frame: pl.DataFrame,
    load_id: str,
    loaded_at: datetime | None = None,
    *,
    dictionary: bool = False,
) -> pl.DataFrame:
    """The frame with ``_fp_load_id`` and ``_fp_loaded_at`` added to every row
    (``dictionary``: the load id as a categorical, which Parquet stores as one value)."""
    at = loaded_at or datetime.now(UTC)
    return frame.with_columns(
        pl.lit(load_id, pl.Categorical if dictionary else pl.String).alias(LOAD_ID),
        pl.lit(at).cast(pl.Datetime("us", "UTC")).alias(LOADED_AT),
    )


def schema_to_bytes(schema: pl.Schema) -> bytes:
    """A polars schema as bytes (Arrow IPC of an empty frame), exact for every dtype."""
    buffer = io.BytesIO()
    schema.to_frame().write_ipc(buffer)
    return buffer.getvalue()


def schema_from_bytes(data: bytes) -> pl.Schema:
    """The schema ``schema_to_bytes`` stored."""
    return pl.read_ipc(io.BytesIO(data)).schema


def pinned_load_ids(
    table: str, version: int | None, loads: Sequence[tuple[int, str, str]]
) -> tuple[int, list[str] | None]:
    """Which rows a read as of load sequence number ``version`` sees.

    PostgreSQL and SQLite keep only a table's current rows. A past version is still
    exact when every later load of the table only appended rows: it is the rows whose
    load id was committed at or before it.

    Args:
        table: table name, for messages.
        version: the load sequence number to read as of; ``None`` for the latest.
        loads: the table's committed loads as (sequence number, load id, disposition),
            in sequence order.

    Returns:
        The version read and the load ids to keep (``None``: all rows).

    Raises:
        DestinationError: the table did not exist at ``version``, or a later load replaced
            or merged rows, so that version is gone.
    """
    if not loads:
        raise DestinationError(f"table {table!r} has no committed load")
    latest = loads[-1][0]
    if version is None or version >= latest:
        return latest, None
    if version < loads[0][0]:
        raise DestinationError(
            f"table {table!r} at version {version}: the table's first load is version {loads[0][0]}"
        )
    rewrite = next((seq for seq, _, mode in loads if seq > version and mode != "append"), None)
    if rewrite is not None:
        raise DestinationError(
            f"table {table!r} at version {version}: load {rewrite} rewrote the table "
            "(replace or merge) and this destination keeps only current rows; read version "
            f"{rewrite} or later, or use the Delta destination for time travel"
        )
    kept = [(seq, load_id) for seq, load_id, _ in loads if seq <= version]
    return kept[-1][0], [load_id for _, load_id in kept]
