"""A loader for the crash test: applies batches 0..N-1 in order, resuming after the last
recorded load. Run as a script; the crash test SIGKILLs it at random points.

    python crash_loader.py KIND WHERE BATCHES ROWS

KIND is delta, sqlite or postgres; WHERE a folder, or a PostgreSQL schema. Prints
``ready`` once imports are done and ``done I SECONDS`` after each batch commits.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import polars as pl

TABLE = "events"
KEY = ["k"]
DELETED = "deleted"


def batch(i: int, rows: int) -> tuple[pl.DataFrame, str]:
    """Batch ``i`` and its disposition: even batches append new keys; odd ones merge,
    updating the last half of the previous batch, adding new keys and deleting every
    seventh key they touch."""
    if i % 2 == 0:
        keys = pl.int_range(i * rows, (i + 1) * rows, eager=True)
        mode = "append"
    else:
        keys = pl.int_range(i * rows - rows // 2, i * rows + rows // 2, eager=True)
        mode = "merge"
    frame = pl.DataFrame({"k": keys}).with_columns(
        pl.format("{}-{}", pl.lit(i), pl.col("k")).alias("v"),
        (pl.col("k") * (i + 1) / 3).alias("x"),
    )
    if mode == "merge":
        frame = frame.with_columns((pl.col("k") % 7 == 0).alias(DELETED))
    return frame, mode


def load_id(i: int) -> str:
    """The load id of batch ``i``."""
    return f"batch-{i:05d}"


def main() -> None:
    kind, where, batches, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.destinations.conftest import make_destination

    destination = make_destination(kind, Path(where), pg_schema=where)
    recorded = set(destination.loads()["load_id"])
    first = next((i for i in range(batches) if load_id(i) not in recorded), batches)
    # precompute batches so a kill lands in the load, not in test-data generation
    work = [(i, *batch(i, rows)) for i in range(first, batches)]
    print("ready", flush=True)  # noqa: T201
    start = time.perf_counter()
    for i, frame, mode in work:
        destination.write(
            TABLE,
            frame,
            load_id=load_id(i),
            mode=mode,  # type: ignore[arg-type]
            primary_key=KEY if mode == "merge" else (),
            delete_column=DELETED if mode == "merge" else None,
            source="crash-test",
        )
        print(f"done {i} {time.perf_counter() - start:.4f}", flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
