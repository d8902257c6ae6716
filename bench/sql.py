"""Benchmark: extracting 1M rows from PostgreSQL with the SQL connector, against COPY and pandas.

``pgbench -i -s 10`` fills ``pgbench_accounts`` (1,000,000 rows) in a database made for
this run (``fp_bench_<random>`` on 127.0.0.1:5432, dropped at the end). Then, in the same
process and run, each reader takes the whole table:

1. ``COPY pgbench_accounts TO STDOUT`` read by ``psql`` (C, libpq) and, second, by psycopg:
   PostgreSQL's own bulk export, text bytes only, nothing parsed into values: the ceiling;
2. featurepipe's ``SqlSource`` (connectorx, Arrow batches of ``--batch-rows``) into polars;
3. pandas ``read_sql`` over a SQLAlchemy engine (psycopg driver): the common baseline.

Each figure is the median of ``--repeat`` rounds; rows/s and ratios are printed as a table.
Timings are reported, never asserted. Run alone: ``.venv/bin/python -P bench/sql.py``
(``-P`` keeps ``bench/`` off ``sys.path``, so no script there can shadow a module).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import psycopg
from rich.console import Console
from rich.table import Table

from featurepipe.config import SqlSourceConfig
from featurepipe.connectors import SqlSource

SERVER = "postgresql://postgres@127.0.0.1:5432"
TABLE = "pgbench_accounts"


@contextmanager
def pgbench_database(scale: int, console: Console) -> Iterator[str]:
    """A fresh database filled by ``pgbench -i -s SCALE``; dropped afterwards."""
    name = f"fp_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        console.log(f"pgbench -i -s {scale} into {name} ...")
        subprocess.run(
            ["pgbench", "-i", "-s", str(scale), "-q", "-h", "127.0.0.1", "-U", "postgres", name],
            check=True,
            capture_output=True,
        )
        yield f"{SERVER}/{name}"
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def read_copy_psql(url: str) -> int:
    """COPY TO STDOUT read by psql (libpq, C): the ceiling; counts the lines received."""
    command = ["psql", "-X", "-q", "-d", url, "-c", f"COPY {TABLE} TO STDOUT"]
    rows = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE) as psql:
        assert psql.stdout is not None
        while block := psql.stdout.read(1 << 20):
            rows += block.count(b"\n")
    if psql.returncode:
        raise SystemExit(f"psql COPY failed with exit code {psql.returncode}")
    return rows


def read_copy(url: str) -> int:
    """COPY TO STDOUT through psycopg: the same export into Python; counts the rows."""
    rows = 0
    with psycopg.connect(url) as con, con.cursor() as cur:
        with cur.copy(f"COPY {TABLE} TO STDOUT") as copy:
            for block in copy:
                rows += bytes(block).count(b"\n")
    return rows


def read_connector(url: str, batch_rows: int) -> int:
    """featurepipe's SQL connector: Arrow batches into polars frames."""
    config = SqlSourceConfig(kind="sql", url=url, table=TABLE, batch_rows=batch_rows)
    return sum(frame.height for frame in SqlSource(TABLE, config).extract())


def read_pandas(url: str) -> int:
    """pandas read_sql over SQLAlchemy with the psycopg driver."""
    import pandas as pd
    from sqlalchemy import create_engine

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return len(pd.read_sql(f"SELECT * FROM {TABLE}", engine))  # noqa: S608
    finally:
        engine.dispose()


def timed(read: Callable[[], int]) -> tuple[float, int]:
    """Wall seconds of one read and the rows it returned."""
    started = time.perf_counter()
    rows = read()
    return time.perf_counter() - started, rows


def main(argv: Sequence[str] | None = None) -> None:
    """Fill the database, time the three readers, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="rounds; medians")
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale (100k rows each)")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="connector batch size")
    args = parser.parse_args(argv)
    console = Console()
    readers: dict[str, Callable[[str], int]] = {
        "COPY TO STDOUT (psql, bytes only)": read_copy_psql,
        "COPY TO STDOUT (psycopg, bytes only)": read_copy,
        f"featurepipe SqlSource (connectorx, batches of {args.batch_rows:,})": lambda url: (
            read_connector(url, args.batch_rows)
        ),
        "pandas read_sql (SQLAlchemy + psycopg)": read_pandas,
    }
    seconds: dict[str, list[float]] = {name: [] for name in readers}
    with pgbench_database(args.scale, console) as url:
        for n in range(1, args.repeat + 1):
            console.log(f"round {n}/{args.repeat}")
            for name, read in readers.items():
                took, rows = timed(lambda read=read: read(url))
                if rows != args.scale * 100_000:
                    raise SystemExit(f"{name} returned {rows} rows, expected {args.scale}00000")
                seconds[name].append(took)
    rows = args.scale * 100_000
    copy = statistics.median(next(iter(seconds.values())))
    table = Table(title=f"extract {rows:,} rows of {TABLE} (median of {args.repeat} rounds)")
    for column in ("reader", "seconds", "rows/s", "vs COPY", "vs pandas"):
        table.add_column(column, justify="left" if column == "reader" else "right")
    pandas = statistics.median(seconds[list(readers)[-1]])
    for name, values in seconds.items():
        s = statistics.median(values)
        table.add_row(
            name, f"{s:.2f}", f"{rows / s:,.0f}", f"{copy / s:.2f}×", f"{pandas / s:.2f}×"
        )
    console.print(table)
    console.print(
        "vs COPY = COPY seconds / reader seconds (throughput relative to COPY; goal ≥ 0.5×); "
        "vs pandas = pandas seconds / reader seconds (goal: several ×)."
    )
    console.print(
        f"[dim]{os.cpu_count()} cores, Python {platform.python_version()}, {sys.platform}; "
        "all readers in this process, in the same run.[/dim]"
    )


if __name__ == "__main__":
    main()
