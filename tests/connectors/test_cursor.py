"""The cursor rule as a property: whatever the batch sizes, however many rows share a cursor
value, and whether rows are inserted or updated (moving their cursor forward) between runs,
no row version is loaded twice and, after a final pull, every row's latest version is loaded.
"""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from featurepipe.connectors.base import CursorTracker
from featurepipe.state import decode_state, encode_state

# One change: a cursor offset (0..2) from the last committed value, and either a new row
# (None) or the row to update (an index into the rows so far).
changes = st.lists(
    st.tuples(st.integers(0, 2), st.one_of(st.none(), st.integers(0, 1_000))), max_size=30
)
# A run: the changes made before it, the batch size of its pull, and whether its load
# crashed (nothing loaded, state not committed).
runs = st.lists(st.tuples(changes, st.integers(1, 7), st.booleans()), min_size=1, max_size=8)


def _pull(rows: dict[int, tuple[int, int]], state: dict, batch_rows: int) -> tuple[list, dict]:
    frame = pl.DataFrame(
        [(i, version, at) for i, (version, at) in rows.items()],
        schema={"id": pl.Int64, "version": pl.Int64, "at": pl.Int64},
        orient="row",
    )
    last = state.get("cursor")
    if last:
        frame = frame.filter(pl.col("at") >= last["value"])  # the SQL WHERE
    tracker = CursorTracker("at", ["id"], last)
    pulled = [
        row
        for offset in range(0, frame.height, batch_rows)
        for row in tracker.admit(frame.slice(offset, batch_rows), "t")
        .select("id", "version")
        .iter_rows()
    ]
    return pulled, decode_state(encode_state({"cursor": tracker.state()}))  # through JSON


@settings(max_examples=200, deadline=None)
@given(runs)
def test_no_row_version_is_lost_or_loaded_twice(plan) -> None:
    rows: dict[int, tuple[int, int]] = {}  # id -> (version, cursor) in the "database"
    loaded: list[tuple[int, int]] = []
    state: dict = {}
    for edits, batch_rows, crashes in plan:
        base = state["cursor"]["value"] if state.get("cursor") else 0
        for offset, target in edits:
            if target is None or not rows:
                rows[len(rows)] = (0, base + offset)
            else:
                row = target % len(rows)
                rows[row] = (rows[row][0] + 1, max(rows[row][1], base + offset))
        pulled, new_state = _pull(rows, state, batch_rows)
        if not crashes:
            loaded += pulled
            state = new_state
    pulled, state = _pull(rows, state, 3)  # a final pull that succeeds
    loaded += pulled
    assert len(loaded) == len(set(loaded))  # no version loaded twice
    latest = {i: max(v for j, v in loaded if j == i) for i, _ in loaded}
    assert latest == {i: version for i, (version, _) in rows.items()}  # none missed
