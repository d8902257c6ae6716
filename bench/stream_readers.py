"""Benchmark: peak memory of the streamed CSV readers alone, for N, 4N and 16N rows.

The orders CSV of ``bench/stream_ingest.py`` is read batch by batch (``--batch-rows``), each
batch dropped as soon as it arrives, by: ``chunks``, polars' ``read_csv`` a chunk at a time
(``file_streams.read_csv_chunks``, what a local CSV goes through); ``pyarrow``, pyarrow's
streaming reader in ``file_streams.BLOCK_BYTES`` blocks (``stream_csv``: gzip, zip, remote,
latin1); ``pyarrow-8MiB``, the same with the 8 MiB blocks used before; ``collect_batches``,
polars' ``scan_csv(...).collect_batches()``, used before for local files. Each read runs in
a fresh process, which samples its anonymous resident memory (``RssAnon``) every 5 ms; the
table shows the peak over what the imports left. A reader whose memory is bounded shows
the same figure for every size. Figures are printed, never asserted.

Run alone: ``.venv/bin/python -P bench/stream_readers.py [--rows 500000] [--batch-rows 50000]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_ingest import AnonymousPeak, _anonymous_mb, write_orders  # noqa: E402

READERS = ("chunks", "pyarrow", "pyarrow-8MiB", "collect_batches")
OPTIONS = {"has_header": True, "infer_schema": False, "empty_string_is_null": False}


def batches(reader: str, path: str, batch_rows: int) -> Iterator[pl.DataFrame]:
    """The file's batches through one reader."""
    from featurepipe.connectors import file_streams

    if reader == "collect_batches":
        yield from pl.scan_csv(path, glob=False, **OPTIONS).collect_batches(chunk_size=batch_rows)
    elif reader == "chunks":
        with open(path, "rb") as handle:
            yield from file_streams.read_csv_chunks(
                handle, {"separator": ",", **OPTIONS}, batch_rows
            )
    else:
        if reader == "pyarrow-8MiB":
            file_streams.BLOCK_BYTES = 8 << 20
        yield from file_streams.stream_csv(
            lambda: open(path, "rb"),  # noqa: SIM115 - stream_csv closes it
            separator=",",
            has_header=True,
            skip_rows=0,
            encoding="utf8",
            batch_rows=batch_rows,
        )


def child(reader: str, path: str, batch_rows: int) -> None:
    """Read the file once in this process; print its rows, peak memory and seconds."""
    import featurepipe.connectors.file_streams  # noqa: F401 - imported before measuring

    before = _anonymous_mb()
    sampler = AnonymousPeak()
    started = time.perf_counter()
    rows = 0
    for batch in batches(reader, path, batch_rows):
        rows += batch.height
        del batch
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "anon": sampler.stop() - before, "s": seconds}))  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="N (4N and 16N too)")
    parser.add_argument("--batch-rows", type=int, default=50_000, help="rows per batch")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.batch_rows)
        return
    sizes = (args.rows, 4 * args.rows, 16 * args.rows)
    table = Table(title=f"CSV reader memory (anonymous MB over imports), batch_rows = "
                  f"{args.batch_rows:,}")  # fmt: skip
    table.add_column("reader", no_wrap=True)
    for n in sizes:
        table.add_column(f"{n:,} rows", justify="right")
    table.add_column(f"seconds, {sizes[-1]:,}", justify="right")
    with tempfile.TemporaryDirectory(prefix="featurepipe-bench-readers-") as tmp:
        paths = {n: Path(tmp) / f"orders-{n}.csv" for n in sizes}
        for n, path in paths.items():
            write_orders(path, n)
        for reader in READERS:
            cells, seconds = [], 0.0
            for n, path in paths.items():
                done = subprocess.run(
                    [sys.executable, "-P", __file__, "--child", reader, str(path),
                     "--batch-rows", str(args.batch_rows)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                figures = json.loads(done.stdout.strip().splitlines()[-1])
                assert figures["rows"] == n, (reader, figures)  # noqa: S101 - a broken reader
                cells.append(f"{figures['anon']:.0f}")
                seconds = figures["s"]
            table.add_row(reader, *cells, f"{seconds:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
