"""Benchmark: peak memory of ingesting N and 4N rows through ``fp.Ingest``, streamed and whole.

A CSV of N synthetic order rows (an id key, integers, decimals, a date, a yes/no flag,
low-cardinality text and free text; about 70 bytes a row) is ingested into an empty Delta
warehouse the way notebooks/01_ingest does it: ``Ingest.stage`` (typing, cleaning, the
table's suite), ``Ingest.gate``, ``Ingest.load``, ``Ingest.finish``. Then the same with 4N
rows. Each ingest runs in a fresh Python process, which reports its peak resident memory
(``ru_maxrss``) once its imports are done (polars, featurepipe, Great Expectations) and at
the end; the difference is what the ingest itself needed.

``stream=True`` flows each source in batches of ``--batch-rows`` (staged on disk);
``stream=False`` reads and types each source whole, as before streaming existed: the
baseline, measured in the same run. Streamed, the ingest's memory should stay about flat
from N to 4N; whole, it grows with the table. Figures are printed, never asserted.

Run alone: ``.venv/bin/python -P bench/stream_ingest.py [--rows 500000] [--batch-rows 50000]``
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
SUITE = {
    "name": "orders",
    "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "quantity", "min_value": 0, "max_value": 1000},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "region", "value_set": ["north", "south", "east", "west"]},
        },
    ],
}
SOURCE = """[sources.orders]
path = "orders.csv"
write_disposition = "replace"
primary_key = ["id"]
batch_rows = {batch_rows}
compact = false
"""


def write_orders(path: Path, rows: int) -> int:
    """A CSV of ``rows`` orders, written in chunks; returns its size in bytes."""
    chunk = 1_000_000
    with path.open("wb") as handle:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ids = pl.int_range(start, start + n, eager=True)
            frame = pl.DataFrame(
                {
                    "id": ids,
                    "quantity": ids % 997,
                    "price": (ids % 10_000).cast(pl.Float64) / 100,
                    "paid": ["yes", "no"] * (n // 2) + ["yes"] * (n % 2),
                    "region": ["north", "south", "east", "west"] * (n // 4) + ["north"] * (n % 4),
                },
            ).with_columns(
                (pl.date(2024, 1, 1) + pl.duration(days=pl.col("id") % 365)).alias("ordered_on"),
                pl.format("order {} of customer {}", pl.col("id"), pl.col("id") % 5003).alias(
                    "note"
                ),
            )
            frame.write_csv(handle, include_header=start == 0)
    return path.stat().st_size


def _anonymous_mb() -> float:
    """This process's resident anonymous memory now (``RssAnon``: heap, not file pages)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


class AnonymousPeak:
    """Samples ``RssAnon`` every few milliseconds in a thread and keeps the largest."""

    def __init__(self) -> None:
        self.peak = _anonymous_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _anonymous_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _anonymous_mb())


def child(project: str, stream: bool) -> None:
    """One ingest in this process; prints its memory after imports and at its peak (MB)."""
    import great_expectations  # noqa: F401  - imported before measuring, as the ingest would

    import featurepipe as fp

    after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    anonymous = _anonymous_mb()
    sampler = AnonymousPeak()
    started = time.perf_counter()
    config = fp.load_config(project)
    ingest = fp.Ingest(config, fp.new_run_id())
    staged = ingest.stage(config.path(config.expectations_dir), stream=stream)
    ingest.gate()
    rows = sum(ingest.load(name, s.rows).rows for name, s in staged.items())
    ingest.finish()
    seconds = time.perf_counter() - started
    figures = {
        "imports": after_imports,
        "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "anon_imports": anonymous,
        "anon_peak": sampler.stop(),
        "rows": rows,
        "s": seconds,
    }
    print(json.dumps(figures))  # noqa: T201


def measure(folder: Path, rows: int, batch_rows: int, stream: bool) -> dict[str, float]:
    """Ingest ``rows`` orders in a fresh process; its figures."""
    project = folder / f"{rows}-{stream}"
    shutil.rmtree(project, ignore_errors=True)
    (project / "expectations").mkdir(parents=True)
    text = (REPO / "featurepipe.toml").read_text()  # the flights project, its sources replaced
    start, end = text.index("# ---- sources"), text.index("# ---- features")
    source = SOURCE.replace("{batch_rows}", str(batch_rows))
    (project / "featurepipe.toml").write_text(text[:start] + source + text[end:])
    (project / "expectations" / "orders.json").write_text(json.dumps(SUITE))
    (project / "orders.csv").symlink_to(folder / f"orders-{rows}.csv")
    done = subprocess.run(
        [sys.executable, "-P", __file__, "--child", str(project), "--stream", str(int(stream))],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"ingest of {rows} rows failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="N (4N is measured too)")
    parser.add_argument("--batch-rows", type=int, default=50_000, help="rows per batch")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--stream", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, bool(args.stream))
        return
    console = Console()
    table = Table(title=f"ingest memory, N = {args.rows:,} rows, batch_rows = {args.batch_rows:,}")
    for column in ("path", "rows", "CSV MB", "peak RSS MB", "RSS ingest MB",
                   "anon ingest MB", "seconds"):  # fmt: skip
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="featurepipe-bench-stream-") as tmp:
        folder = Path(tmp)
        sizes = {n: write_orders(folder / f"orders-{n}.csv", n) for n in (args.rows, 4 * args.rows)}
        growth = {}
        for stream in (True, False):
            used = {}
            for n, size in sizes.items():
                f = measure(folder, n, args.batch_rows, stream)
                used[n] = (f["peak"] - f["imports"], f["anon_peak"] - f["anon_imports"])
                table.add_row(
                    "streamed" if stream else "whole",
                    f"{n:,}",
                    f"{size / 2**20:.0f}",
                    f"{f['peak']:.0f}",
                    f"{used[n][0]:.0f}",
                    f"{used[n][1]:.0f}",
                    f"{f['s']:.1f}",
                )
            growth[stream] = [
                big / max(small, 1.0) for small, big in zip(*used.values(), strict=True)
            ]
    console.print(table)
    for stream, (rss, anon) in growth.items():
        console.print(
            f"{'streamed' if stream else 'whole'}: ingest memory 4N / N = {rss:.2f} (RSS), "
            f"{anon:.2f} (anonymous)"
        )
    console.print("1.0 = flat; 4.0 = grows with the table")


if __name__ == "__main__":
    main()
