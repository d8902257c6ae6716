"""Files read in bounded batches through any fsspec file: CSV/TSV (plain, gzip or the one
member of a zip, local or remote) with pyarrow's streaming CSV reader, NDJSON a batch of
lines at a time, and Parquet one row group at a time.

Memory holds the batch being cut and what the reader holds ahead of it (for CSV about 35
blocks of ``BLOCK_BYTES``; ``batch_rows`` lines of NDJSON; a Parquet row group), never the
whole file.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import IO, Any

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = [
    "BLOCK_BYTES",
    "CHUNK_BYTES",
    "csv_encoding_streams",
    "read_csv_chunks",
    "stream_csv",
    "stream_ndjson",
    "stream_parquet",
]

BLOCK_BYTES = 1 << 20
"""CSV bytes parsed at a time. pyarrow's streaming reader reads about 32 blocks ahead of
the one handed over whatever the consumer does, so the block sets the reader's memory:
measured (bench/README.md, stream_ingest), 8 MiB blocks held 145 / 317 / 600 MB for 0.5M /
2M / 8M rows, 1 MiB blocks about 76 / 90 MB for 0.5M / 8M, as fast."""
CHUNK_BYTES = 8 << 20
"""Bytes of a local CSV that :func:`read_csv_chunks` parses at a time."""
_ENCODINGS = {"utf8": "utf8", "latin1": "latin1", "cp1252": "cp1252"}  # utf8-lossy: read whole


def csv_encoding_streams(encoding: str) -> bool:
    """Whether pyarrow can stream a CSV in this encoding (not ``utf8-lossy``)."""
    return encoding in _ENCODINGS


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

    Column names follow polars' ``read_csv`` (``column_1``… without a header, repeated
    names made unique), and empty fields stay empty strings, so a file reads the same as
    through polars. Unlike polars, a row with fewer fields than the header is an error.

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
    renamed = [f"column_{i + 1}" for i in range(len(names))]
    if has_header:
        renamed = _unique_header(names)
    with opener() as handle:
        reader = pacsv.open_csv(
            handle, read_options=read, parse_options=parse, convert_options=convert
        )
        blocks = (pl.DataFrame(pl.from_arrow(b.rename_columns(renamed))) for b in reader)
        yield from _rebatch(blocks, batch_rows, pl.Schema(dict.fromkeys(renamed, pl.String())))


def _unique_header(names: list[str]) -> list[str]:
    """Header names made unique as polars' ``read_csv`` does (a repeated ``a`` becomes
    ``a_duplicated_0``, ``a_duplicated_1`` …).

    Raises:
        ValueError: a made-up name is also in the header, as polars refuses it.
    """
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if not count else f"{name}_duplicated_{count - 1}")
    if len(set(unique)) != len(unique):
        raise ValueError(f"repeated column names {names} cannot be made unique; rename them")
    return unique


def _rebatch(
    blocks: Iterator[pl.DataFrame], batch_rows: int, schema: pl.Schema
) -> Iterator[pl.DataFrame]:
    """Blocks regrouped into batches of ``batch_rows`` rows (the last one shorter); one empty
    batch (of ``schema`` when there is no block) when there is no row. Holds one batch's
    rows at a time."""
    pending: list[pl.DataFrame] = []
    held = rows = 0
    last: pl.DataFrame | None = None
    for block in blocks:
        pending.append(block)
        held += block.height
        rows += block.height
        last = block
        if held < batch_rows:
            continue
        frame = pl.concat(pending)
        full = held - held % batch_rows
        for offset in range(0, full, batch_rows):
            yield frame.slice(offset, batch_rows)
        pending, held = [frame.slice(full)], held - full
        del frame
    if held:
        yield pl.concat(pending)
    elif not rows:
        yield schema.to_frame() if last is None else last.clear()


def read_csv_chunks(
    handle: IO[bytes], options: dict[str, Any], batch_rows: int
) -> Iterator[pl.DataFrame]:
    """A UTF-8 CSV parsed by polars' ``read_csv`` about :data:`CHUNK_BYTES` at a time, in
    batches of ``batch_rows`` rows: the rows ``read_csv(file, **options)`` gives, without
    holding more of the file than a chunk and a batch.

    polars' own ``scan_csv(...).collect_batches()`` parses the file ahead of a slower
    consumer (it held 170 MB before handing over the first batch of a 132 MB file). Chunks
    end at a line break outside quotes (an even number of ``"`` before it); each chunk after
    the first is parsed behind the file's lines up to its header (without a header: skipped
    lines, then a header of the column names), so it reads as the same file would. A stray
    ``"`` inside an unquoted field, which would upset the count, makes polars refuse the
    file whole or in chunks (measured with polars 2.1; the messages differ).

    Args:
        handle: the file, opened in binary mode.
        options: ``read_csv`` options (``separator``, ``has_header``, ``skip_rows``, …;
            quotes are ``"``).
        batch_rows: rows per batch at most.
    """
    chunks = _row_chunks(handle)
    first = next(chunks, b"")
    head_rows = int(options.get("skip_rows", 0)) + bool(options["has_header"])
    head = _rows_end(first, head_rows)
    while head is None or head == len(first):  # the first chunk must hold a row past the head
        more = next(chunks, None)
        if more is None:
            break
        first += more
        head = _rows_end(first, head_rows)
    head = len(first) if head is None else head
    frame = pl.read_csv(first, **options)
    prefix = first[:head]
    if not options["has_header"]:
        prefix += (str(options.get("separator", ",")).join(frame.columns) + "\n").encode()
    later = {**options, "has_header": True}
    blocks = itertools.chain([frame], (pl.read_csv(prefix + c, **later) for c in chunks))
    del frame, first
    yield from _rebatch(blocks, batch_rows, pl.Schema())


def _row_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    """The file's bytes in chunks of whole rows (the last one as the file ends)."""
    carry = b""
    while data := handle.read(CHUNK_BYTES):
        buffer = carry + data
        cut = _last_row_end(buffer)
        if cut:
            yield buffer[:cut]
        carry = buffer[cut:]
    if carry:
        yield carry


def _last_row_end(buffer: bytes) -> int:
    """The offset after the last line break outside quotes (0: none)."""
    end = buffer.rfind(b"\n")
    quotes = buffer.count(b'"', 0, max(end, 0))
    while end >= 0 and quotes % 2:
        previous = buffer.rfind(b"\n", 0, end)
        quotes -= buffer.count(b'"', max(previous, 0), end)
        end = previous
    return end + 1


def _rows_end(buffer: bytes, rows: int) -> int | None:
    """The offset after the first ``rows`` rows (line breaks outside quotes), if there."""
    offset, quotes = 0, 0
    while rows:
        end = buffer.find(b"\n", offset)
        if end < 0:
            return None
        quotes += buffer.count(b'"', offset, end)
        offset = end + 1
        rows -= quotes % 2 == 0
    return offset


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
