"""Which tables and loads a pinned read takes on PostgreSQL and SQLite (history.py)."""

from __future__ import annotations

import polars as pl
import pytest

from featurepipe.destinations.history import ReadPlan, generation_start, plan_read
from featurepipe.errors import DestinationError

# seq, load id, disposition: loads of table t; other tables' loads take the gaps
LOADS = [(2, "A", "append"), (3, "M", "merge"), (6, "R", "replace"), (8, "B", "append")]
OLD = pl.Schema({"k": pl.Int64()})


def test_the_current_generation_begins_with_the_latest_replace() -> None:
    assert generation_start(LOADS) == 6
    assert generation_start(LOADS[:2]) == 2
    assert generation_start([]) is None


def test_a_version_is_read_from_the_generation_that_holds_it() -> None:
    archived = [(2, 6, OLD)]
    assert plan_read("t", None, LOADS, archived, 2) == ReadPlan(8, "t", None, None)
    assert plan_read("t", 7, LOADS, archived, 2) == ReadPlan(6, "t", "_fp_h6", ["R"])
    assert plan_read("t", 5, LOADS, archived, 2) == ReadPlan(3, "_fp_v2", "_fp_h2", ["A", "M"], OLD)
    assert plan_read("t", 2, LOADS, archived, 2) == ReadPlan(2, "_fp_v2", "_fp_h2", ["A"], OLD)


def test_versions_before_history_was_kept_follow_the_append_only_rule() -> None:
    # loaded by a featurepipe that kept no history: only appends keep older versions exact
    with pytest.raises(DestinationError, match=r"'t' at version 2: load 3 rewrote the table"):
        plan_read("t", 2, LOADS, [], None)
    with pytest.raises(DestinationError, match=r"'t' at version 4: load 6 rewrote"):
        plan_read("t", 4, LOADS, [], 6)  # history kept from load 6 on
    assert plan_read("t", 7, LOADS, [], 6).rows_table == "t"


def test_a_version_not_kept_or_before_the_table_is_a_clear_error() -> None:
    with pytest.raises(DestinationError, match=r"version 4: .*no longer kept.*versions 6 to 8"):
        plan_read("t", 4, LOADS, [], 2)  # its archived generation was dropped
    with pytest.raises(DestinationError, match=r"version 1: the table's first load is version 2"):
        plan_read("t", 1, LOADS, [(2, 6, OLD)], 2)
    with pytest.raises(DestinationError, match="no committed load"):
        plan_read("t", 1, [], [], None)
