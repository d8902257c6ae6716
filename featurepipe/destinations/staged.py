"""Rows staged on local disk for one load: Parquet files written batch by batch while they
are typed and checked, loaded in one destination transaction once the gate opens.

A table larger than memory goes through a load this way: memory holds one batch while
staging and one file while loading. Until the load commits, the rows exist only in the
staging folder, so a failed gate (or a crash) leaves the destination untouched.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from ..errors import DestinationError

__all__ = ["PART_ROWS", "StagedRows"]

_POSITION = "_fp_position"
_PLACE = "_fp_place"
_PART = "_fp_part"
PART_ROWS = 1 << 19
"""Rows of the key columns checked for repeats at a time (:meth:`StagedRows.column_parts`);
a larger table's keys are split into parts of about this many rows on disk."""


def categoricals_as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Categorical and enum columns as strings: deltalake's writer and merge take them so,
    and each Parquet row group has its own dictionary (parts read back cast to the staged
    types)."""
    return frame.with_columns(pl.col(pl.Categorical, pl.Enum).cast(pl.String))


class StagedRows:
    """A load's rows, spooled to Parquet files in a temporary folder, a batch per file.

    Batches may differ in column types (a later batch widened a column): :attr:`schema`
    holds each column's type in the latest batch that has it, and every file is read back
    cast to it. Rows of an earlier batch whose primary key a later batch repeats are dropped
    by :meth:`drop_superseded`, as ``clean_table`` keeps the last row of a key.

    Args:
        table: the table the rows load into, for messages.
        folder: where the files go (a new temporary folder by default); removed by
            :meth:`close`.
    """

    def __init__(self, table: str, folder: str | Path | None = None) -> None:
        self.table = table
        self.folder = Path(tempfile.mkdtemp(prefix=f"featurepipe-{table}-", dir=folder))
        # removed by close(), or when the rows are dropped (a failed gate, an interrupted run)
        self._remove = weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        self.files: list[Path] = []
        self.schema = pl.Schema()
        self._dropped: dict[int, pl.Series] = {}
        self._heights: list[int] = []

    def add(self, frame: pl.DataFrame) -> None:
        """Spool one batch (empty batches keep their columns: a table of no rows)."""
        path = self.folder / f"part-{len(self.files):06d}.parquet"
        try:
            frame.write_parquet(path, compression="lz4")
        except OSError as exc:
            raise DestinationError(
                f"table {self.table!r}: cannot stage rows in {self.folder}: {exc}; free "
                "disk space there (or set TMPDIR to a larger disk) and run again."
            ) from exc
        self.files.append(path)
        self._heights.append(frame.height)
        # a later batch's type is the wider one; an all-null batch column keeps the known type
        known = self.schema
        self.schema = pl.Schema(
            {**known, **{c: t for c, t in frame.schema.items() if t != pl.Null or c not in known}}
        )

    @property
    def height(self) -> int:
        """Rows staged and not dropped."""
        return sum(self._heights) - sum(len(d) for d in self._dropped.values())

    def drop_superseded(self, primary_key: Sequence[str]) -> int:
        """Drop each row whose key a later batch repeats (the last row of a key is kept).

        Only the key columns of the staged files are read, a part at a time
        (:meth:`column_parts`).

        Returns:
            The rows dropped.
        """
        if not primary_key or len(self.files) < 2:
            return 0
        key = pl.struct(primary_key)
        later = [
            places.filter(values.select(key.is_duplicated() & ~key.is_last_distinct()).to_series())
            for values, places in self.column_parts(primary_key)
        ]
        dropped = pl.concat(later).to_frame(_PLACE)
        by_file = dropped.select(
            (pl.col(_PLACE) // (1 << 32)).cast(pl.UInt32).alias("file"),
            (pl.col(_PLACE) % (1 << 32)).cast(pl.UInt32).alias(_POSITION),
        )
        for (file,), rows in by_file.group_by("file"):
            positions = rows[_POSITION]
            previous = self._dropped.get(int(file))
            if previous is not None:
                positions = pl.concat([previous, positions]).unique()
            self._dropped[int(file)] = positions
        return dropped.height

    def column_parts(self, names: Sequence[str]) -> Iterator[tuple[pl.DataFrame, pl.Series]]:
        """Some columns of every staged row (dropped rows left out) in parts that each hold
        every row of the values they hold, with each row's place in the table (increasing
        in table order), e.g. to find repeated keys in bounded memory.

        Up to :data:`PART_ROWS` rows come as one part; more are split by a hash of their
        values into parts of about that many rows, spilled to the staging folder a file at
        a time, and read back one part at a time.
        """
        schema = pl.Schema({c: self.schema[c] for c in names})
        parts = -(-self.height // PART_ROWS)
        if parts <= 1:
            frames = [self._places(i, schema) for i in range(len(self.files))]
            whole = pl.concat(frames) if frames else self._places(None, schema)
            yield whole.drop(_PLACE), whole[_PLACE]
            return
        spill = Path(tempfile.mkdtemp(prefix="parts-", dir=self.folder))
        try:
            written = self._spill(schema, parts, spill)
            for part in sorted(written):
                frame = (
                    pl.read_parquet(spill / f"{part}.parquet")
                    .cast(pl.Schema({**schema, _PLACE: pl.UInt64()}))
                    .sort(_PLACE)
                )
                yield frame.drop(_PLACE), frame[_PLACE]
        finally:
            shutil.rmtree(spill, ignore_errors=True)

    def _spill(self, schema: pl.Schema, parts: int, spill: Path) -> set[int]:
        """Write every file's columns (``schema``) and places into ``parts`` Parquet files
        by a hash of the values; returns the parts written."""
        writers: dict[int, pq.ParquetWriter] = {}
        try:
            for index in range(len(self.files)):
                frame = self._places(index, schema).with_columns(
                    (pl.struct(list(schema)).hash() % parts).alias(_PART)
                )
                for (part,), piece in frame.group_by(_PART):
                    table = categoricals_as_text(piece.drop(_PART)).to_arrow()
                    writer = writers.get(int(part))
                    if writer is None:
                        writer = pq.ParquetWriter(spill / f"{part}.parquet", table.schema)
                        writers[int(part)] = writer
                    writer.write_table(table)
        except OSError as exc:
            raise DestinationError(
                f"table {self.table!r}: cannot spill key columns to {spill}: {exc}; free disk "
                "space there (or set TMPDIR to a larger disk) and run again."
            ) from exc
        finally:
            for writer in writers.values():
                writer.close()
        return set(writers)

    def _places(self, index: int | None, schema: pl.Schema) -> pl.DataFrame:
        """A file's columns (``schema``, dropped rows left out) and each row's place:
        the file's index above 32 bits, its row in the file below (no file: no rows)."""
        if index is None:
            return schema.to_frame().with_columns(pl.lit(0, pl.UInt64).alias(_PLACE))
        return self._read(index, schema, places=True)

    def batches(self) -> Iterator[pl.DataFrame]:
        """The staged rows a file at a time, in the final schema, dropped rows left out
        (no file: one empty batch of the schema's columns)."""
        if not self.files:
            yield self.schema.to_frame()
        for i in range(len(self.files)):
            yield self._read(i)

    def columns(self, names: Sequence[str]) -> pl.DataFrame:
        """Some columns of every staged row (dropped rows left out), e.g. to check keys."""
        schema = pl.Schema({c: self.schema[c] for c in names})
        frames = [self._read(i, schema) for i in range(len(self.files))]
        return pl.concat(frames) if frames else schema.to_frame()

    def _read(
        self, index: int, schema: pl.Schema | None = None, *, places: bool = False
    ) -> pl.DataFrame:
        """A staged file's rows in ``schema`` (the final one by default), dropped rows left
        out; with ``places``, each row's place (see :meth:`_places`)."""
        schema = schema or self.schema
        present = pl.read_parquet_schema(self.files[index])
        frame = pl.read_parquet(self.files[index], columns=[c for c in schema if c in present])
        frame = frame.with_row_index(_POSITION)
        dropped = self._dropped.get(index)
        if dropped is not None:
            frame = frame.filter(pl.col(_POSITION).is_in(dropped.implode()).not_())
        place = (pl.lit(index << 32, pl.UInt64) + pl.col(_POSITION)).alias(_PLACE)
        return frame.select(
            *((pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
              for c, t in schema.items()),
            *([place] if places else []),
        )  # fmt: skip

    def head(self, n: int = 0) -> pl.DataFrame:
        """The first ``n`` rows (none by default: the columns and types only)."""
        frames, rows = [self.schema.to_frame()], 0
        for batch in self.batches() if n else ():
            frames.append(batch.head(n - rows))
            rows += frames[-1].height
            if rows >= n:
                break
        return pl.concat(frames)

    def collect(self) -> pl.DataFrame:
        """Every staged row in one frame (for tests and small tables)."""
        frames = list(self.batches())
        return pl.concat(frames) if frames else self.schema.to_frame()

    @classmethod
    def combine(cls, table: str, parts: Iterable[StagedRows]) -> StagedRows:
        """Staged rows of several parts (of one schema) loaded as one, without copying:
        the parts must stay open until it is loaded, and nothing can be added to it."""
        combined = cls(table)
        combined.close()  # it holds no file of its own: no folder to leave behind
        for part in parts:
            for index in range(len(part.files)):
                frame_dropped = part._dropped.get(index)
                if frame_dropped is not None:
                    combined._dropped[len(combined.files)] = frame_dropped
                combined.files.append(part.files[index])
                combined._heights.append(part._heights[index])
            combined.schema = pl.Schema({**combined.schema, **part.schema})
        return combined

    def close(self) -> None:
        """Remove the staging folder."""
        self._remove()

    def __enter__(self) -> StagedRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
