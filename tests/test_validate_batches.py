"""A suite checked batch by batch decides as it would on the whole table: ``mostly`` on
the totals, row counts and uniqueness over every batch; whole-table statistics refused."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from featurepipe.errors import ConfigError
from featurepipe.validate import BatchValidator, validate_tables


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
    return validator.finish(whole.height, whole.select), validate_tables({"t": whole}, folder)[0]


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
