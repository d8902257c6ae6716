"""Files read in bounded batches through any fsspec file: CSV/TSV (plain, gzip or the one
member of a zip, local or remote) with pyarrow's streaming CSV reader, NDJSON a batch of
lines at a time, and Parquet one row group at a time.

Memory holds one block of the file (``BLOCK_BYTES`` of CSV, ``batch_rows`` lines of NDJSON,
or a Parquet row group) and the batch cut from it, never the whole file.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import IO

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = ["BLOCK_BYTES", "csv_encoding_streams", "stream_csv", "stream_ndjson", "stream_parquet"]

BLOCK_BYTES = 8 << 20  # CSV bytes parsed at a time
_ENCODINGS = {"utf8": "utf8", "latin1": "latin1", "cp1252": "cp1252"}  # utf8-lossy: read whole


def csv_encoding_streams(encoding: str) -> bool:
    """Whether pyarrow can stream a CSV in this encoding (not ``utf8-lossy``)."""
    return encoding in _ENCODINGS


def _slices(frame: pl.DataFrame, batch_rows: int) -> Iterator[pl.DataFrame]:
    for offset in range(0, frame.height, batch_rows):
        yield frame.slice(offset, batch_rows)


def stream_csv(
    opener: Callable[[], AbstractContextManager[IO[bytes]]],
    *,
    separator: str,
    has_header: bool,
    skip_rows: int,
    encoding: str,
    batch_rows: int,
) -> Iterator[pl.DataFrame]:
    """A CSV's rows with every column as text, exactly as in the file, in batches.

    Column names follow polars' ``read_csv`` (``column_1``… without a header), and empty
    fields stay empty strings, so a file reads the same as through polars.

    Args:
        opener: opens the file, decompressed, from its start (called twice: the first
            block gives the column names, then the file is read with every column as text).
        separator: the field separator.
        has_header: the first line (after ``skip_rows``) names the columns.
        skip_rows: lines before the header.
        encoding: ``utf8``, ``latin1`` or ``cp1252``.
        batch_rows: rows per batch at most.
    """
    read = pacsv.ReadOptions(
        skip_rows=skip_rows,
        autogenerate_column_names=not has_header,
        encoding=_ENCODINGS[encoding],
        block_size=BLOCK_BYTES,
    )
    parse = pacsv.ParseOptions(delimiter=separator)
    with opener() as handle:
        names = pacsv.open_csv(handle, read_options=read, parse_options=parse).schema.names
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    renamed = names if has_header else [f"column_{i + 1}" for i in range(len(names))]
    empty = True
    with opener() as handle:
        reader = pacsv.open_csv(
            handle, read_options=read, parse_options=parse, convert_options=convert
        )
        for block in reader:
            frame = pl.DataFrame(pl.from_arrow(block)).rename(
                dict(zip(names, renamed, strict=True))
            )
            for batch in _slices(frame, batch_rows):
                empty = False
                yield batch
    if empty:
        yield pl.DataFrame(schema=dict.fromkeys(renamed, pl.String()))


def stream_parquet(handle: IO[bytes], batch_rows: int) -> Iterator[pl.DataFrame]:
    """A Parquet file's rows in batches of at most ``batch_rows``, a row group at a time
    (a remote file is read by ranges)."""
    parquet = pq.ParquetFile(handle)
    empty = True
    for block in parquet.iter_batches(batch_size=batch_rows):
        empty = False
        yield pl.DataFrame(pl.from_arrow(block))
    if empty:
        yield pl.DataFrame(pl.from_arrow(parquet.schema_arrow.empty_table()))


def stream_ndjson(handle: IO[bytes], batch_rows: int) -> Iterator[pl.DataFrame]:
    """An NDJSON file's records in batches of at most ``batch_rows`` (blank lines skipped);
    each batch is parsed by polars, so its column types are the batch's own."""
    lines: list[bytes] = []
    empty = True
    for line in handle:
        if not line.strip():
            continue
        lines.append(line if line.endswith(b"\n") else line + b"\n")
        if len(lines) == batch_rows:
            empty = False
            yield pl.read_ndjson(io.BytesIO(b"".join(lines)))
            lines = []
    if lines:
        yield pl.read_ndjson(io.BytesIO(b"".join(lines)))
    elif empty:
        yield pl.DataFrame()
