"""The Great Expectations gate, with real GX suites run on real frames."""

from __future__ import annotations

import json

import polars as pl
import pytest

from featurepipe.errors import ConfigError, ValidationFailed
from featurepipe.validate import require_valid, validate_tables


def _suite(folder, table, expectations) -> None:
    (folder / f"{table}.json").write_text(json.dumps({"name": table, "expectations": expectations}))


def _between(column, low, high):
    return {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": column, "min_value": low, "max_value": high},
    }


def test_gate_passes_good_data_and_names_every_failure(tmp_path) -> None:
    _suite(tmp_path, "good", [_between("x", 0, 10)])
    _suite(tmp_path, "bad", [_between("x", 0, 10), _between("y", 0, 1)])
    frames = {
        "good": pl.DataFrame({"x": [1, 2, 3]}),
        "bad": pl.DataFrame({"x": [1, 50, 60], "y": [0, 1, 1]}),
    }
    reports = validate_tables(frames, tmp_path)
    assert [(r.table, r.success, r.passed, r.evaluated) for r in reports] == [
        ("good", True, 1, 1),
        ("bad", False, 1, 2),
    ]
    with pytest.raises(ValidationFailed) as err:
        require_valid(reports)
    failure = err.value.failures[0]
    assert (failure.table, failure.column, failure.unexpected_count) == ("bad", "x", 2)
    assert failure.expectation == "expect_column_values_to_be_between"
    message = str(err.value)
    assert "bad.x: expect_column_values_to_be_between" in message
    assert "nothing was loaded" in message
    assert "e.g. 50, 60" in message
    require_valid(reports[:1])  # the good table alone passes the gate


def test_error_message_stays_bounded(tmp_path) -> None:
    _suite(tmp_path, "wide", [_between(f"c{i}", 0, 1) for i in range(30)])
    frame = pl.DataFrame({f"c{i}": [5] for i in range(30)})
    with pytest.raises(ValidationFailed) as err:
        require_valid(validate_tables({"wide": frame}, tmp_path))
    assert len(err.value.failures) == 30
    assert "... and 20 more" in str(err.value)
    assert len(str(err.value).splitlines()) < 15


def test_missing_or_broken_suite_names_the_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"no expectation suite at .*orders\.json"):
        validate_tables({"orders": pl.DataFrame({"a": [1]})}, tmp_path)
    (tmp_path / "orders.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"orders\.json: not valid JSON"):
        validate_tables({"orders": pl.DataFrame({"a": [1]})}, tmp_path)


def test_timestamps_and_text_validate(tmp_path) -> None:
    _suite(
        tmp_path,
        "t",
        [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "when"}},
            {
                "type": "expect_column_values_to_match_regex",
                "kwargs": {"column": "code", "regex": "^[A-Z]{2}$"},
            },
        ],
    )
    frame = pl.DataFrame({"when": ["2013-01-01T10:00:00Z"], "code": ["aa"]}).with_columns(
        pl.col("when").str.to_datetime(time_zone="UTC")
    )
    [report] = validate_tables({"t": frame}, tmp_path)
    assert not report.success
    assert [f.column for f in report.failures] == ["code"]


def test_an_expectation_that_cannot_run_says_why(tmp_path) -> None:
    _suite(tmp_path, "t", [_between("x", 0, 10)])
    [report] = validate_tables({"t": pl.DataFrame({"x": ["1", "2"]})}, tmp_path)
    assert not report.success
    [failure] = report.failures
    assert str(failure.observed_value).startswith("error: ")
    assert "observed 'error: " in failure.describe()
