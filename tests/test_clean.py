"""Editing rules: identifier names, trims and de-duplication on the primary key."""

from __future__ import annotations

import polars as pl
import pytest

from featurepipe.clean import clean_table, normalize_name
from featurepipe.errors import SchemaError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Dep Time (min)", "dep_time_min"),
        ("tailNum", "tail_num"),
        ("2013 total", "_2013_total"),
        ("Café", "cafe"),
        ("***", "column"),
        ("time_hour", "time_hour"),
    ],
)
def test_normalize_name(name, expected) -> None:
    assert normalize_name(name) == expected


def test_collisions_are_resolved_deterministically_and_originals_kept() -> None:
    frame = pl.DataFrame({"A b": [1], "a_b": [2], "a-b": [3]})
    cleaned = clean_table("t", frame)
    assert cleaned.frame.columns == ["a_b", "a_b_2", "a_b_3"]
    assert cleaned.renamed == {"A b": "a_b", "a_b": "a_b_2", "a-b": "a_b_3"}


def test_duplicates_keep_the_last_row_and_are_counted() -> None:
    frame = pl.DataFrame({"k": [1, 2, 1, 3], "v": [" a", "b ", "c", "d"]})
    cleaned = clean_table("t", frame, primary_key=["k"])
    assert cleaned.duplicates_removed == 1
    assert cleaned.frame.sort("k").rows() == [(1, "c"), (2, "b"), (3, "d")]


def test_null_or_missing_primary_key_is_an_error_naming_the_table() -> None:
    with pytest.raises(SchemaError, match=r"table 'planes'.*1 row\(s\) have a null"):
        clean_table("planes", pl.DataFrame({"tailnum": ["N1", None]}), ["tailnum"])
    with pytest.raises(SchemaError, match=r"table 'planes'.*\['id'\] not found"):
        clean_table("planes", pl.DataFrame({"tailnum": ["N1"]}), ["id"])
