"""A loader for the crash test: applies batches 0..N-1 in order, resuming after the last
recorded load. Run as a script; the crash test SIGKILLs it at random points.

    python crash_loader.py KIND WHERE BATCHES ROWS [--kill-in-record]

KIND is delta, sqlite or postgres; WHERE a folder, or a PostgreSQL schema. Before it
prints ``ready`` the loader imports everything and loads a tiny frame into a scratch
destination through every disposition, so its first real load is no slower than the
rest (a kill window sized from batch times then covers loads, not start-up). It prints
``start I`` before and ``done I SECONDS`` after each batch. ``--kill-in-record`` (Delta)
SIGKILLs the loader inside ``_record``: after the data commit, before the loads record.

The crash test does not start this script for every kill: it forks each loader from a
multiprocessing fork server that imported the modules in ``PRELOAD`` once (a second per
kill saved), calls :func:`child` there, and reads the same lines from a pipe. Importing
starts no thread pool (polars, Delta and Arrow start theirs on first use, in the child).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import polars as pl

TABLE = "events"
KEY = ["k"]
DELETED = "deleted"
AHEAD = 8  # batches generated before ``ready``; a run rarely gets further before its kill
# what the fork server imports once for all loaders (sys.path already holds the repository)
PRELOAD = [
    "tests.destinations.crash_loader",
    "tests.destinations.places",
    "featurepipe.destinations.postgres",
    "featurepipe.destinations.sqlite",
]


def batch(i: int, rows: int) -> tuple[pl.DataFrame, str]:
    """Batch ``i`` and its disposition. Odd batches merge: they update the last half of
    the previous batch, add new keys and delete every seventh key they touch. Even ones
    append new keys, except every sixth batch from 4 on, which replaces the table with
    twice as many rows (keys of the previous batch with new values, and new keys)."""
    if i % 2:
        keys, mode = pl.int_range(i * rows - rows // 2, i * rows + rows // 2, eager=True), "merge"
    elif i % 6 == 4:
        keys, mode = pl.int_range((i - 1) * rows, (i + 1) * rows, eager=True), "replace"
    else:
        keys, mode = pl.int_range(i * rows, (i + 1) * rows, eager=True), "append"
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


def scratch_place(kind: str, where: str) -> tuple[Path, str]:
    """The folder or PostgreSQL schema of the warm-up destination (the test drops the schema)."""
    if kind == "postgres":
        return Path(), f"{where}_warmup"
    folder = Path(where) / "_warmup"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder, ""


def write(destination: Any, table: str, frame: pl.DataFrame, mode: str, load: str) -> None:
    """One load with the crash test's options."""
    destination.write(
        table,
        frame,
        load_id=load,
        mode=mode,
        primary_key=KEY if mode == "merge" else (),
        delete_column=DELETED if mode == "merge" else None,
        source="crash-test",
    )


def warm_up(kind: str, where: str) -> None:
    """Load a tiny frame through every code path the real loads take, in a scratch
    destination of the same kind: the first write of a process pays for lazy imports
    and runtime start-up."""
    from tests.destinations.places import make_destination

    folder, schema = scratch_place(kind, where)
    scratch = make_destination(kind, folder, pg_schema=schema)
    for i in (0, 2, 1, 4):  # create, append to an existing table, merge, replace
        frame, mode = batch(i, 4)
        write(scratch, TABLE, frame, mode, f"warm-{uuid.uuid4()}")
    scratch.loads()


def kill_in_record() -> None:
    """Make the Delta destination die by SIGKILL when it is about to record a load."""
    from featurepipe.destinations import DeltaDestination

    def die(*_args: Any, **_kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    DeltaDestination._record = die  # type: ignore[method-assign]


def load(
    kind: str, where: str, batches: int, rows: int, say: Callable[[str], Any], *options: str
) -> None:
    """Warm up, then apply the batches not yet recorded, telling ``say`` how far it got."""
    from tests.destinations.places import make_destination

    warm_up(kind, where)
    if "--kill-in-record" in options:
        kill_in_record()
    destination = make_destination(kind, Path(where), pg_schema=where)
    recorded = set(destination.loads()["load_id"])
    first = next((i for i in range(batches) if load_id(i) not in recorded), batches)
    # generate the next batches now, so a kill lands in a load, not in test-data generation
    ready = {i: batch(i, rows) for i in range(first, min(first + AHEAD, batches))}
    say("ready")
    start = time.perf_counter()
    for i in range(first, batches):
        frame, mode = ready.pop(i) if i in ready else batch(i, rows)
        say(f"start {i}")
        write(destination, TABLE, frame, mode, load_id(i))
        say(f"done {i} {time.perf_counter() - start:.4f}")


def child(lines: Connection, kind: str, where: str, batches: int, rows: int, *options: str) -> None:
    """The loader in a process forked by the fork server: its lines go to ``lines``
    (one small message is one write to the pipe, so a kill never leaves half a line)."""
    load(kind, where, batches, rows, lines.send, *options)
    lines.close()


def main() -> None:
    kind, where, batches, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    load(kind, where, batches, rows, lambda line: print(line, flush=True), *sys.argv[5:])  # noqa: T201


if __name__ == "__main__":
    main()
