"""Crash safety: a loader SIGKILLed at random points, at least 50 times per destination,
then resumed, compared with an oracle after every kill and at the end.

The kill window adapts to the machine: it is twice the median time the loader took per
batch so far, so kills land inside loads whether the machine is quiet or busy.
"""

from __future__ import annotations

import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from featurepipe.destinations import LOAD_ID, LOADED_AT
from tests.destinations import crash_loader
from tests.destinations.conftest import drop_pg_schema, make_destination, new_pg_schema

KILLS = 50
BATCHES = 150  # more than two per kill: the loader must not run out of work
ROWS = 4_000
LOADER = Path(crash_loader.__file__)


def _oracle(batches: int) -> list[pl.DataFrame]:
    """The table after batch 0, 0..1, 0..2, …: the batches applied in memory."""
    states, state = [], pl.DataFrame(schema={"k": pl.Int64, "v": pl.String, "x": pl.Float64})
    for i in range(batches):
        frame, mode = crash_loader.batch(i, ROWS)
        if mode == "merge":
            state = state.join(frame.select("k"), on="k", how="anti")
            frame = frame.filter(~pl.col(crash_loader.DELETED)).drop(crash_loader.DELETED)
        state = pl.concat([state, frame])
        states.append(state.sort("k"))
    return states


def _run(kind: str, where: str, kill_after: float | None) -> tuple[bool, list[float]]:
    """Start the loader; SIGKILL it ``kill_after`` seconds after it is ready.

    Returns whether it was killed mid-run, and the per-batch times it reported.
    """
    loader = subprocess.Popen(
        [sys.executable, str(LOADER), kind, where, str(BATCHES), str(ROWS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert loader.stdout is not None
    assert loader.stdout.readline().strip() == "ready"
    killed = False
    if kill_after is not None:
        time.sleep(kill_after)
        if loader.poll() is None:
            loader.send_signal(signal.SIGKILL)
            killed = True
    out, _ = loader.communicate(timeout=300)
    if not killed:
        assert loader.returncode == 0, out
    done = [float(line.split()[2]) for line in out.splitlines() if line.startswith("done")]
    return killed, [b - a for a, b in zip([0.0, *done], done, strict=False)]


def _check(destination, oracle: list[pl.DataFrame], *, final: bool) -> int:
    """The table equals the oracle after some prefix of batches, the loads table is not
    ahead of it, and no row is lost or duplicated. Returns the prefix length."""
    frame = destination.read(crash_loader.TABLE)[0].collect()
    assert frame["k"].is_duplicated().sum() == 0, "duplicated rows"
    applied = frame[LOAD_ID].unique().sort().to_list()
    last = int(applied[-1].split("-")[1])
    assert applied == [crash_loader.load_id(i) for i in range(last + 1)], "a batch is missing"
    rows = frame.drop(LOAD_ID, LOADED_AT).select("k", "v", "x").sort("k")
    assert rows.equals(oracle[last]), f"table differs from the oracle after batch {last}"
    recorded = destination.loads()["load_id"].to_list()
    assert recorded == sorted(set(recorded)), "a load recorded twice"
    assert len(recorded) - 1 <= last, "the loads table is ahead of the data"
    # Delta commits the data, then records it: the record may lag by one load, never more
    lag = 1 if destination.kind == "delta" and not final else 0
    assert last - (len(recorded) - 1) <= lag, "a committed load is not recorded"
    return last


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["delta", "postgres", "sqlite"])
def test_sigkill_at_random_points_loses_and_duplicates_nothing(kind: str, tmp_path: Path) -> None:
    where = new_pg_schema() if kind == "postgres" else str(tmp_path)
    destination = make_destination(kind, tmp_path, where)
    oracle = _oracle(BATCHES)
    rng = random.Random(6)  # noqa: S311 - kill times, not secrets
    try:
        kills, per_batch = 0, [0.2]
        for _attempt in range(KILLS * 3):
            window = 2 * statistics.median(per_batch[-20:])
            killed, times = _run(kind, where, rng.uniform(0, window))
            per_batch += times
            if destination.version(crash_loader.TABLE) is not None:
                _check(destination, oracle, final=False)
            kills += killed
            if kills == KILLS:
                break
        assert kills == KILLS, f"only {kills} kills landed before the loader finished"
        _run(kind, where, None)  # resume to the end
        assert _check(destination, oracle, final=True) == BATCHES - 1
        assert destination.loads()["load_id"].to_list() == [
            crash_loader.load_id(i) for i in range(BATCHES)
        ]
    finally:
        if kind == "postgres":
            drop_pg_schema(where)
