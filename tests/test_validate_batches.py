"""A suite checked batch by batch decides as it would on the whole table: ``mostly`` on
the totals, row counts and uniqueness over every batch; whole-table statistics refused."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from featurepipe.destinations import staged as staged_module
from featurepipe.destinations.staged import StagedRows
from featurepipe.errors import ConfigError
from featurepipe.validate import BatchValidator, validate_tables
from tests.destinations.test_staged import _far_apart


def _suite(folder: Path, *expectations: dict) -> Path:
    (folder / "t.json").write_text(json.dumps({"name": "t", "expectations": list(expectations)}))
    return folder


MOSTLY = {
    "type": "expect_column_values_to_be_between",
    "kwargs": {"column": "x", "min_value": 0, "max_value": 10, "mostly": 0.75},
}
ROWS = {"type": "expect_table_row_count_to_be_between", "kwargs": {"max_value": 5}}
PAIRS = {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["x", "y"]}}


def _batched(folder: Path, batches: list[pl.DataFrame]):
    validator = BatchValidator("t", folder)
    for batch in batches:
        validator.check(batch)
    whole = pl.concat(batches)
    places = pl.int_range(whole.height, dtype=pl.UInt64, eager=True)
    batched = validator.finish(whole.height, lambda names: [(whole.select(names), places)])
    return batched, validate_tables({"t": whole}, folder)[0]


@pytest.mark.parametrize(
    ("batches", "failed"),
    [
        # the first batch misses "mostly" alone; the table meets it: passes
        ([pl.DataFrame({"x": [50, 1], "y": [1, 2]}), pl.DataFrame({"x": [2, 3], "y": [3, 4]})], 0),
        # 2 of 6 out of range, 6 rows, and (1, 1) twice in different batches: all fail
        (
            [
                pl.DataFrame({"x": [1, 50, 2], "y": [1, 2, 3]}),
                pl.DataFrame({"x": [60, 1, 3], "y": [4, 1, 5]}),
            ],
            3,
        ),
    ],
)
def test_batched_verdicts_equal_the_whole_table_verdicts(
    tmp_path: Path, batches: list[pl.DataFrame], failed: int
) -> None:
    folder = _suite(tmp_path, MOSTLY, ROWS, PAIRS)
    batched, whole = _batched(folder, batches)
    assert len(whole.failures) == failed
    assert batched.success == whole.success
    assert [f.expectation for f in batched.failures] == [f.expectation for f in whole.failures]
    assert [f.unexpected_count for f in batched.failures] == [
        f.unexpected_count for f in whole.failures
    ]


def test_whole_table_statistics_are_refused_up_front(tmp_path: Path) -> None:
    mean = {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "x", "min_value": 0}}
    with pytest.raises(ConfigError, match=r"expect_column_mean_to_be_between.*not streamed"):
        BatchValidator("t", _suite(tmp_path, MOSTLY, mean))


@pytest.mark.parametrize("part_rows", [64, 1 << 19])
def test_repeats_far_apart_in_staged_rows_fail_as_on_the_whole_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part_rows: int
) -> None:
    monkeypatch.setattr(staged_module, "PART_ROWS", part_rows)  # 64: checked in ~47 parts
    unique_u = {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "u"}}
    unique_k = {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "k"}}
    mostly = {**PAIRS, "kwargs": {"column_list": ["a", "b"], "mostly": 0.1}}
    folder = _suite(tmp_path, unique_u, unique_k, PAIRS | {"kwargs": {"column_list": ["a", "b"]}},
                    mostly)  # fmt: skip
    batches = _far_apart()
    validator = BatchValidator("t", folder)
    with StagedRows("t", tmp_path) as staged:
        for batch in batches:
            staged.add(batch)
            validator.check(batch)
        batched = validator.finish(staged.height, staged.column_parts)
    in_memory, whole = _batched(folder, batches)  # the table's columns in one part
    assert [f.column for f in whole.failures] == ["u", "k", None]  # "mostly" 0.1 passes
    assert batched.success is whole.success is False
    for mine, theirs in zip(batched.failures, whole.failures, strict=True):
        assert (mine.column, mine.unexpected_count) == (theirs.column, theirs.unexpected_count)
        assert mine.unexpected_percent == pytest.approx(theirs.unexpected_percent)
    assert batched.failures == in_memory.failures  # the same examples, in table order
    assert list(batched.failures[0].examples) == list(range(20))
    assert list(batched.failures[1].examples) == [*range(10), *range(100, 105), *range(100, 105)]
