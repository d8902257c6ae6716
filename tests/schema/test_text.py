"""Dictionary-encoded raw text: typed batch by batch, it gives what plain strings give."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from featurepipe.config import ColumnHint
from featurepipe.schema import apply_schema
from featurepipe.schema.text import concat_raw, encode_batches, is_encoded, is_text

NULLS = ["", "NA"]


def _same(a, b) -> None:
    assert a.types == b.types
    assert a.schema.columns == b.schema.columns
    assert a.frame.equals(b.frame)
    assert a.quarantine.equals(b.quarantine)
    assert a.rows_in == b.rows_in


def test_batches_type_like_the_whole_frame_with_hints_and_quarantine() -> None:
    frame = pl.DataFrame(
        {
            "id": ["1", "2", "3", "4", "5", "6", "7"],
            "amount": ["10", "x12", "NA", "7", "007", "", "3"],
            "when": ["01/02/2013", "13/01/2013", "", "NA", "02/02/2013", "bad", "03/02/2013"],
            "kind": ["a", "b", "a", "a", "b", "a", "a"],
            "tags": ['{"k": 1}', "NA", '{"k": 2}', '{"j": "x"}', "", '{"k": 3}', '{"k": 4}'],
        }
    )
    hints = {"amount": ColumnHint(type="int"), "when": ColumnHint(type="date")}
    whole = apply_schema("t", frame, hints, NULLS, load_id="L")
    batches = apply_schema("t", frame.iter_slices(n_rows=3), hints, NULLS, load_id="L")
    _same(batches, whole)
    assert batches.quarantine.select("row", "column", "value").rows() == [
        (2, "amount", "x12"),
        (6, "when", "bad"),
    ]
    assert whole.types["kind"] == "categorical" and whole.types["tags"] == "json"


def test_encoded_columns_keep_one_dictionary_across_batches() -> None:
    raw = encode_batches(
        [pl.DataFrame({"a": ["x", "y"], "n": [1, 2]}), pl.DataFrame({"a": ["y", "z"]})]
    )
    assert is_encoded(raw.schema["a"]) and raw.schema["n"] == pl.Int64
    assert raw["a"].cast(pl.String).to_list() == ["x", "y", "y", "z"]
    assert raw["n"].to_list() == [1, 2, None, None]
    assert encode_batches([]).height == 0


def test_a_column_typed_in_one_part_and_text_in_another_becomes_text() -> None:
    parts = [
        pl.DataFrame({"n": pl.Series([7, -1], dtype=pl.Int16)}),
        encode_batches([pl.DataFrame({"n": ["007", "NA"]})]),
    ]
    joined = concat_raw(parts)
    assert joined.schema["n"] == pl.String
    assert joined["n"].to_list() == ["7", "-1", "007", "NA"]
    typed = apply_schema("t", parts, null_values=NULLS)
    assert typed.types == {"n": "text"}  # 007 keeps its zeros
    assert typed.frame["n"].to_list() == ["7", "-1", "007", None]


def test_categorical_source_columns_are_typed_at_the_source_not_text() -> None:
    frame = pl.DataFrame({"c": pl.Series(["1", "2", "1"], dtype=pl.Categorical)})
    assert not is_text(frame.schema["c"])
    assert apply_schema("t", frame).types == {"c": "categorical"}


_VALUE = st.one_of(
    st.integers(-40_000, 40_000).map(str),
    st.sampled_from(["007", "+5", "-0", " 5", "NA", "", "yes", "no", "1.50", "x"]),
    st.dates().map(lambda d: d.strftime("%d/%m/%Y")),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(_VALUE, min_size=3, max_size=3), min_size=1, max_size=30),
    st.integers(1, 7),
)
def test_any_text_types_the_same_encoded_batch_by_batch(rows, batch) -> None:
    frame = pl.DataFrame(rows, schema=["a", "b", "c"], orient="row")
    whole = apply_schema("t", frame, {"c": ColumnHint(type="int")}, NULLS)
    batches = apply_schema("t", frame.iter_slices(batch), {"c": ColumnHint(type="int")}, NULLS)
    _same(batches, whole)
