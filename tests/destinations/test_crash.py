"""Crash safety: a loader SIGKILLed at random points, at least 50 times per destination,
then resumed, compared with an oracle after every kill and at the end.

The kill window adapts to the machine: it is twice the median time the loader took per
batch so far, counted from ``ready`` (the loader warms up before it), so kills land inside
loads whether the machine is quiet or busy. The test also proves they do: it counts kills
that left a load half done (a Delta data file no commit refers to, or a commit not yet in
the loads table; an SQLite rollback journal) and fails if too few did.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import statistics
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import polars as pl
import pytest

from featurepipe.destinations import LOAD_ID, LOADED_AT, Destination
from tests.destinations import crash_loader
from tests.destinations.conftest import drop_pg_schema, make_destination, new_pg_schema

KILLS = 50
BATCHES = 150  # more than two per kill: the loader must not run out of work
ROWS = 2_000
# Each loader is forked from a server that imported polars, Delta, psycopg and featurepipe's
# destinations once: a real process to SIGKILL, without a second of imports per kill.
FORKS = multiprocessing.get_context("forkserver")
FORKS.set_forkserver_preload(crash_loader.PRELOAD)


def _oracle(batches: int) -> list[pl.DataFrame]:
    """The table after batch 0, 0..1, 0..2, …: the batches applied in memory."""
    states, state = [], pl.DataFrame(schema={"k": pl.Int64, "v": pl.String, "x": pl.Float64})
    for i in range(batches):
        frame, mode = crash_loader.batch(i, ROWS)
        if mode == "merge":
            state = state.join(frame.select("k"), on="k", how="anti")
            frame = frame.filter(~pl.col(crash_loader.DELETED)).drop(crash_loader.DELETED)
        state = frame if mode == "replace" else pl.concat([state, frame])
        states.append(state.sort("k"))
    return states


@dataclass
class Run:
    """One loader run: killed or not, the batch it was inside when killed, batch times."""

    killed: bool
    inside: int | None
    times: list[float]


def _line(lines: Connection) -> str:
    """The loader's next line; ``""`` once it exited and said everything."""
    if not lines.poll(300):
        raise TimeoutError("the loader said nothing for 300 s")
    try:
        return str(lines.recv())
    except EOFError:
        return ""


def _run(
    kind: str, where: str, kill_after: float | None, *options: str, batches: int = BATCHES
) -> Run:
    """Start the loader; SIGKILL it ``kill_after`` seconds after its first load starts."""
    lines, sink = FORKS.Pipe(duplex=False)
    loader = FORKS.Process(
        target=crash_loader.child, args=(sink, kind, where, batches, ROWS, *options)
    )
    loader.start()
    sink.close()  # the loader holds the only write end: its exit ends the lines
    try:
        assert _line(lines) == "ready"
        # the kill window starts with the first load, not with "ready": on a busy machine
        # the loader may wait for a core that long
        first = _line(lines)
        killed = False
        if kill_after is not None and first:
            time.sleep(kill_after)
            if loader.is_alive():
                loader.kill()  # SIGKILL
                killed = True
        said = [first, *iter(lambda: _line(lines), "")] if first else []
        loader.join(timeout=300)
    finally:
        lines.close()
        if loader.is_alive():
            loader.kill()
    if not killed and not options:
        assert loader.exitcode == 0, said
    done = [float(line.split()[2]) for line in said if line.startswith("done")]
    inside = int(said[-1].split()[1]) if said and said[-1].startswith("start") else None
    return Run(killed, inside, [b - a for a, b in zip([0.0, *done], done, strict=False)])


def _check(destination: Destination, oracle: list[pl.DataFrame], *, final: bool) -> int:
    """The table equals the oracle after some prefix of batches, the loads table records
    exactly that prefix (Delta: it may lag by the last load), and no row is lost or
    duplicated. Returns the index of the last batch in the table."""
    frame = destination.read(crash_loader.TABLE)[0].collect()
    assert frame["k"].is_duplicated().sum() == 0, "duplicated rows"
    last = int(frame[LOAD_ID].max().split("-")[1])  # type: ignore[union-attr]
    rows = frame.drop(LOAD_ID, LOADED_AT).select("k", "v", "x").sort("k")
    assert rows.equals(oracle[last]), f"table differs from the oracle after batch {last}"
    recorded = destination.loads()["load_id"].to_list()
    assert recorded == [crash_loader.load_id(i) for i in range(len(recorded))], (
        "the loads table skips a batch or records one twice"
    )
    assert len(recorded) - 1 <= last, "the loads table is ahead of the data"
    # Delta commits the data, then records it: the record may lag by one load, never more
    lag = 1 if destination.kind == "delta" and not final else 0
    assert last - (len(recorded) - 1) <= lag, "a committed load is not recorded"
    return last


def _uncommitted_delta_files(warehouse: Path) -> set[Path]:
    """Data files in the warehouse's tables that no Delta commit adds: a load killed
    after writing them and before its commit."""
    files = set()
    for table in warehouse.iterdir():
        log = table / "_delta_log"
        if table.name.startswith(".") or not log.is_dir():
            continue
        added = {
            json.loads(line)["add"]["path"]
            for commit in log.glob("*.json")
            for line in commit.read_text().splitlines()
            if line.startswith('{"add"')
        }
        files |= {p for p in table.glob("*.parquet") if p.name not in added}
    return files


def _half_done(kind: str, tmp_path: Path, before: set[Path]) -> tuple[bool, set[Path]]:
    """Whether the killed load left the destination half written, checked before anyone
    opens it (opening an SQLite database rolls its hot journal back)."""
    if kind == "sqlite":
        journal = tmp_path / "warehouse.sqlite-journal"
        wal = tmp_path / "warehouse.sqlite-wal"
        return journal.exists() or wal.exists(), before
    if kind == "delta" and (tmp_path / "warehouse").is_dir():
        now = _uncommitted_delta_files(tmp_path / "warehouse")
        return bool(now - before), now
    return False, before


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["delta", "postgres", "sqlite"])
def test_sigkill_at_random_points_loses_and_duplicates_nothing(kind: str, tmp_path: Path) -> None:
    where = new_pg_schema() if kind == "postgres" else str(tmp_path)
    destination = make_destination(kind, tmp_path, where)
    oracle = _oracle(BATCHES)
    rng = random.Random(6)  # noqa: S311 - kill times, not secrets
    try:
        kills, inside, half_done, uncommitted, per_batch = 0, 0, 0, set[Path](), [0.1]
        for _attempt in range(KILLS * 3):
            window = 2 * statistics.median(per_batch[-20:])
            run = _run(kind, where, rng.uniform(0, window))
            per_batch += run.times
            if run.killed:
                hit, uncommitted = _half_done(kind, tmp_path, uncommitted)
                kills, inside = kills + 1, inside + (run.inside is not None)
                if destination.version(crash_loader.TABLE) is not None:
                    last = _check(destination, oracle, final=False)
                    hit |= last >= len(destination.loads())  # committed, not yet recorded
                half_done += hit
            if kills == KILLS:
                break
        assert kills == KILLS, f"only {kills} kills landed before the loader finished"
        # the kills must hit loads, not the time before or between them
        assert inside >= KILLS // 2, f"only {inside} of {kills} kills landed inside a load"
        if kind != "postgres":  # a killed PostgreSQL transaction leaves nothing to see
            assert half_done >= KILLS // 10, f"only {half_done} kills left a load half done"
        # resume: the load the last kill cut, then six more (every disposition); the
        # batches after those would only repeat loads no kill touched
        end = min(BATCHES, len(destination.loads()) + 7)
        _run(kind, where, None, batches=end)
        assert _check(destination, oracle, final=True) == end - 1
        assert destination.loads()["load_id"].to_list() == [
            crash_loader.load_id(i) for i in range(end)
        ]
    finally:
        if kind == "postgres":
            drop_pg_schema(where)
            drop_pg_schema(f"{where}_warmup")


def test_delta_loader_killed_inside_the_loads_record_is_recorded_on_resume(tmp_path) -> None:
    destination = make_destination("delta", tmp_path)
    died = _run("delta", str(tmp_path), None, "--kill-in-record", batches=2)
    assert died.times == []  # SIGKILLed by itself inside the record of batch 0
    assert destination.version(crash_loader.TABLE) == 0
    assert destination.loads().height == 0
    _run("delta", str(tmp_path), None, batches=2)
    loads = destination.loads()
    assert loads.select("load_id", "rows", "version").rows() == [
        (crash_loader.load_id(0), ROWS, 0), (crash_loader.load_id(1), ROWS, 1)
    ]  # fmt: skip
    assert _check(destination, _oracle(2), final=True) == 1
