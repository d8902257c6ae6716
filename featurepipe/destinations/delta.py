"""The embedded default destination: one Delta Lake table per folder under ``warehouse/``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from ..errors import DestinationError

__all__ = ["LOAD_ID", "LOADED_AT", "DeltaDestination", "LoadResult"]

LOAD_ID = "_fp_load_id"
LOADED_AT = "_fp_loaded_at"

# Delta has no unsigned integers and no dictionary-encoded text: map them to types it has.
_DELTA_TYPES: dict[type[pl.DataType], pl.DataType] = {
    pl.UInt8: pl.Int16(),
    pl.UInt16: pl.Int32(),
    pl.UInt32: pl.Int64(),
    pl.UInt64: pl.Decimal(20, 0),
    pl.Categorical: pl.String(),
    pl.Enum: pl.String(),
}


@dataclass(frozen=True)
class LoadResult:
    """One committed table load."""

    table: str
    rows: int
    version: int
    load_id: str
    mode: str


class DeltaDestination:
    """A folder of Delta tables; each write is one atomic Delta transaction.

    Args:
        path: the warehouse folder (created on first write).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def table_path(self, table: str) -> Path:
        """Folder of one table."""
        return self.path / table

    def tables(self) -> list[str]:
        """Names of the tables that hold at least one commit."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if (p / "_delta_log").is_dir())

    def version(self, table: str) -> int | None:
        """The latest version of a table, or ``None`` if it does not exist."""
        try:
            return DeltaTable(str(self.table_path(table))).version()
        except TableNotFoundError:
            return None

    def write(
        self,
        table: str,
        frame: pl.DataFrame,
        *,
        load_id: str,
        mode: Literal["replace", "append"] = "replace",
    ) -> LoadResult:
        """Write a frame as one Delta commit, adding ``_fp_load_id`` and ``_fp_loaded_at``.

        Raises:
            DestinationError: the write failed; the table is left as it was.
        """
        data = frame.with_columns(
            *(
                pl.col(c).cast(_DELTA_TYPES[type(t)])
                for c, t in frame.schema.items()
                if type(t) in _DELTA_TYPES
            ),
            pl.lit(load_id).alias(LOAD_ID),
            pl.lit(datetime.now(UTC)).cast(pl.Datetime("us", "UTC")).alias(LOADED_AT),
        )
        target = self.table_path(table)
        try:
            data.write_delta(
                str(target),
                mode="overwrite" if mode == "replace" else "append",
                delta_write_options={"schema_mode": "overwrite" if mode == "replace" else "merge"},
            )
            version = DeltaTable(str(target)).version()
        except (DeltaError, OSError, pl.exceptions.PolarsError) as exc:
            raise DestinationError(f"table {table!r}: could not write to {target}: {exc}") from exc
        return LoadResult(
            table=table, rows=data.height, version=version, load_id=load_id, mode=mode
        )

    def read(self, table: str, version: int | None = None) -> tuple[pl.LazyFrame, int]:
        """A table as of a version (the latest by default), and the version read.

        Raises:
            DestinationError: the table or the version does not exist.
        """
        target = self.table_path(table)
        try:
            delta = DeltaTable(str(target))
            if version is not None:
                delta.load_as_version(version)
            pinned = delta.version()
            return pl.scan_delta(delta), pinned
        except TableNotFoundError as exc:
            raise DestinationError(
                f"table {table!r} not found in {self.path}; run the ingest step "
                "(featurepipe run, or notebooks/01_ingest) first."
            ) from exc
        except DeltaError as exc:
            raise DestinationError(f"table {table!r} at version {version}: {exc}") from exc
