"""Applying declared types; values that do not fit go to quarantine with a reason."""

from __future__ import annotations

import polars as pl

from featurepipe.config import ColumnHint
from featurepipe.schema import QUARANTINE_SCHEMA, apply_schema


def test_values_that_fail_a_hint_are_quarantined_not_nulled() -> None:
    frame = pl.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "amount": ["10", "x12", "NA", "7"],
            "when": ["2013-01-01T10:00:00Z", "2013-01-01T11:00:00Z", "yesterday", ""],
        }
    )
    hints = {"amount": ColumnHint(type="int"), "when": ColumnHint(type="datetime")}
    typed = apply_schema("orders", frame, hints, null_values=["NA", ""])

    assert typed.rows_in == 4
    assert typed.frame["id"].to_list() == [1, 4]  # rows 2 and 3 held back whole
    assert typed.frame["amount"].to_list() == [10, 7]
    assert typed.frame["when"].to_list()[1] is None  # "" is a null token, not a failure
    assert typed.quarantine.schema == QUARANTINE_SCHEMA
    assert typed.quarantine.select("row", "column", "value").rows() == [
        (2, "amount", "x12"),
        (3, "when", "yesterday"),
    ]
    assert set(typed.quarantine["table"]) == {"orders"}
    assert typed.quarantine["reason"].to_list() == [
        "not an integer",
        "not a datetime in format %Y-%m-%dT%H:%M:%S%#z",
    ]
    assert typed.rows_quarantined == 2


def test_hint_with_format_and_booleans() -> None:
    frame = pl.DataFrame({"d": ["24/11/2026", "01/02/2026"], "ok": ["yes", "N"]})
    hints = {"d": ColumnHint(type="date", format="%d/%m/%Y"), "ok": ColumnHint(type="bool")}
    typed = apply_schema("t", frame, hints)
    assert typed.quarantine.height == 0
    assert [str(d) for d in typed.frame["d"]] == ["2026-11-24", "2026-02-01"]
    assert typed.frame["ok"].to_list() == [True, False]


def test_null_tokens_become_nulls_before_inference() -> None:
    frame = pl.DataFrame({"n": ["1", "NA", "N/A", "3"]})
    typed = apply_schema("t", frame, null_values=["NA", "N/A"])
    assert typed.types == {"n": "int"}
    assert typed.frame["n"].to_list() == [1, None, None, 3]
