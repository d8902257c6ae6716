"""Applying types under hints and contracts; what does not fit goes to quarantine."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from featurepipe.config import ColumnHint
from featurepipe.errors import SchemaError
from featurepipe.schema import QUARANTINE_SCHEMA, SchemaStore, TableSchema, apply_schema


def test_values_that_fail_a_hint_are_quarantined_not_nulled() -> None:
    frame = pl.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "amount": ["10", "x12", "NA", "7"],
            "when": ["2013-01-01T10:00:00Z", "2013-01-01T11:00:00Z", "yesterday", ""],
        }
    )
    hints = {"amount": ColumnHint(type="int"), "when": ColumnHint(type="datetime")}
    typed = apply_schema("orders", frame, hints, ["NA", ""], source="shop", load_id="L1")

    assert typed.rows_in == 4
    assert typed.frame["id"].to_list() == [1, 4]  # rows 2 and 3 held back whole
    assert typed.frame["amount"].to_list() == [10, 7]
    assert typed.frame["amount"].dtype == pl.Int64  # the hint wins over the inferred int8
    assert typed.frame["when"].to_list()[1] is None  # "" is a null token, not a failure
    assert typed.quarantine.schema == QUARANTINE_SCHEMA
    assert typed.quarantine.select("source", "table", "load_id").unique().rows() == [
        ("shop", "orders", "L1")
    ]
    assert typed.quarantine.select("row", "column", "value").rows() == [
        (2, "amount", "x12"),
        (3, "when", "yesterday"),
    ]
    assert typed.quarantine["reason"].to_list() == [
        "does not fit the hinted type int64",
        "does not fit the hinted type datetime %Y-%m-%dT%H:%M:%S%.f%#z",
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
    frame = pl.DataFrame({"n": ["1", "NA", "N/A", "3"], "s": ["a", "NA", "b", "-"]})
    typed = apply_schema("t", frame, null_values=["NA", "N/A", "-"])
    assert typed.types == {"n": "int8", "s": "text"}
    assert typed.frame["n"].to_list() == [1, None, None, 3]
    assert typed.frame["s"].to_list() == ["a", None, "b", None]


def test_a_null_token_that_looks_like_a_value_stays_null() -> None:
    typed = apply_schema("t", pl.DataFrame({"n": ["1", "0", "3"]}), null_values=["0"])
    assert typed.frame["n"].to_list() == [1, None, 3]


def test_names_are_normalized_and_originals_kept() -> None:
    frame = pl.DataFrame({"Dep Time": ["1"], "dep_time": ["2"], "Café": ["x"]})
    typed = apply_schema("t", frame, {"Dep Time": "int"})
    assert typed.frame.columns == ["dep_time", "dep_time_2", "cafe"]
    assert [c.original for c in typed.schema.columns.values()] == ["Dep Time", "dep_time", "Café"]
    assert typed.schema.columns["dep_time"].type.logical == "int64"


def _load(store: SchemaStore, frame: pl.DataFrame, **kwargs) -> tuple[object, TableSchema]:
    typed = apply_schema("orders", frame, stored=store.load("orders"), load_id="L", **kwargs)
    return typed, store.save(typed.schema)


def test_evolve_adds_columns_and_widens_types(tmp_path: Path) -> None:
    store = SchemaStore(tmp_path / "_schemas")
    _, v1 = _load(store, pl.DataFrame({"id": ["1", "2"], "qty": ["3", "4"]}))
    assert v1.version == 1 and v1.types == {"id": "int8", "qty": "int8"}

    typed, v2 = _load(store, pl.DataFrame({"id": ["300"], "qty": ["2.5"], "note": ["hi"]}))
    assert v2.version == 2
    assert v2.types == {"id": "int16", "qty": "float", "note": "text"}
    assert typed.frame.row(0) == (300, 2.5, "hi")
    assert set(typed.changes) == {
        "id: int8 → int16",
        "qty: int8 → float",
        "added column note (text)",
    }

    # narrower data fits the stored types: no new version, stored dtypes kept
    typed, v3 = _load(store, pl.DataFrame({"id": ["5"], "qty": ["1"], "note": ["x"]}))
    assert v3.version == 2 and typed.frame.schema == {
        "id": pl.Int16, "qty": pl.Float64, "note": pl.String,
    }  # fmt: skip
    assert store.versions("orders") == [1, 2]
    assert store.load("orders", version=1) == v1


def test_freeze_raises_and_names_what_changed(tmp_path: Path) -> None:
    store = SchemaStore(tmp_path / "_schemas")
    with pytest.raises(SchemaError, match="no schema is stored"):
        _load(store, pl.DataFrame({"id": ["1"]}), contract="freeze")
    _load(store, pl.DataFrame({"id": ["1"], "qty": ["3"]}))
    with pytest.raises(SchemaError) as caught:
        _load(store, pl.DataFrame({"id": ["x"], "qty": ["4"], "extra": ["y"]}), contract="freeze")
    message = str(caught.value)
    assert "'orders'" in message and "nothing was loaded" in message
    assert "column 'id' is text here, int8 stored" in message
    assert "new column 'extra' (text)" in message
    assert store.versions("orders") == [1]
    # data that fits passes a freeze
    typed, _ = _load(store, pl.DataFrame({"id": ["7"], "qty": ["8"]}), contract="freeze")
    assert typed.frame.height == 1


def test_discard_row_and_discard_value(tmp_path: Path) -> None:
    store = SchemaStore(tmp_path / "_schemas")
    _load(store, pl.DataFrame({"id": ["1", "2"], "qty": ["3", "4"]}))
    batch = pl.DataFrame(
        {"id": ["5", "6", "7"], "qty": ["1", "oops", "2"], "new": [None, None, "z"]}
    )

    rows, schema = _load(store, batch, contract="discard_row")
    assert rows.frame.rows() == [(5, 1)]  # row 2 misfits, row 3 has a value in a new column
    assert rows.quarantine.select("row", "column", "value").rows() == [
        (2, "qty", "oops"),
        (3, "new", "z"),
    ]
    assert "contract discard_row" in rows.quarantine["reason"][0]
    assert schema.version == 1

    values, schema = _load(store, batch, contract="discard_value")
    assert values.frame.rows() == [(5, 1), (6, None), (7, 2)]  # values out, rows kept
    assert values.quarantine.height == 2 and values.rows_quarantined == 0
    assert schema.version == 1


def test_per_column_contract_overrides_the_table(tmp_path: Path) -> None:
    store = SchemaStore(tmp_path / "_schemas")
    _load(store, pl.DataFrame({"id": ["1"], "qty": ["3"]}))
    hints = {"qty": ColumnHint(contract="discard_value")}
    typed, schema = _load(
        store, pl.DataFrame({"id": ["1.5"], "qty": ["x"]}), hints=hints, contract="evolve"
    )
    assert schema.types == {"id": "float", "qty": "int8"}
    assert typed.frame.rows() == [(1.5, None)]
    assert typed.quarantine["value"].to_list() == ["x"]


def test_a_hint_without_format_takes_the_format_most_values_have(caplog) -> None:
    frame = pl.DataFrame(
        {
            "d": ["31/01/2013", "01/02/2013", "soon", "NA"],
            "n": ["1,234", "12", "x", "5"],
            "m": ["$1.50", "$2", "$x", "$3.25"],
        }
    )
    with caplog.at_level("WARNING", logger="featurepipe.schema.contract"):
        typed = apply_schema("t", frame, {"d": "date", "n": "int", "m": "decimal"})
    assert typed.frame.schema == {"d": pl.Date, "n": pl.Int64, "m": pl.Decimal(38, 2)}
    assert [str(v) for v in typed.frame["d"]] == ["2013-01-31", "2013-02-01", "None"]
    assert typed.frame["n"].to_list() == [1234, 12, 5]
    assert typed.quarantine.select("row", "column", "value").rows() == [
        (3, "d", "soon"),
        (3, "m", "$x"),
        (3, "n", "x"),
    ]
    assert typed.quarantine["reason"][0] == "does not fit the hinted type date %d/%m/%Y"
    assert "table 't': 3 value(s) quarantined, 1 row(s) held back (columns: d, m, n)" in (
        caplog.text
    )


def test_typed_source_columns_keep_their_type_and_follow_the_contract(tmp_path: Path) -> None:
    store = SchemaStore(tmp_path / "_schemas")
    first = pl.DataFrame({"id": pl.Series([1, 2], dtype=pl.Int8), "at": ["x", "y"]})
    typed, schema = _load(store, first)
    assert schema.types == {"id": "int8", "at": "text"}
    # a value too wide for the stored int8 under discard_row: quarantined, not wrapped
    wide = pl.DataFrame({"id": pl.Series([3, 300], dtype=pl.Int16), "at": ["z", "w"]})
    typed, schema = _load(store, wide, contract="discard_row")
    assert typed.frame.rows() == [(3, "z")]
    assert typed.quarantine.select("row", "column", "value").rows() == [(2, "id", "300")]
    assert schema.version == 1


def test_a_typed_value_the_stored_type_would_change_is_quarantined(tmp_path: Path) -> None:
    store = SchemaStore(tmp_path / "_schemas")
    _load(store, pl.DataFrame({"ok": pl.Series([0, 1], dtype=pl.Int8)}).cast(pl.Boolean))
    later = pl.DataFrame({"ok": pl.Series([1, 2, 0], dtype=pl.Int8)})
    typed, schema = _load(store, later, contract="discard_row")
    assert typed.frame["ok"].to_list() == [True, False]  # 2 is no flag: not cast to true
    assert typed.quarantine.select("row", "column", "value").rows() == [(2, "ok", "2")]
    assert schema.types == {"ok": "bool"}
