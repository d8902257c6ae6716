"""Type inference from raw text values: rules, and the lossless property."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurepipe.schema import apply_schema, infer_types


def _infer(values: list[str | None]) -> str:
    return infer_types(pl.DataFrame({"c": values}, schema={"c": pl.String}))["c"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "-2", "0", None], "int"),
        (["1", "2.5", "-.5", "1e3"], "float"),
        (["007", "12"], "text"),  # an integer would drop the leading zeros
        (["12345678901234567890"], "text"),  # beyond int64, and beyond a float's 15 digits
        (["0.12345678901234567"], "text"),  # would read back as ...566: not as written
        (["10.357019999999999", "1.5"], "float"),  # 17 digits that do read back as written
        (["1e400"], "text"),  # a float would make it inf
        (["2013-01-01T10:00:00Z", "2013-01-01T05:00:00-05:00"], "datetime"),
        (["2013-01-01 10:00"], "text"),  # no offset: the instant is unknown
        (["a", "1"], "text"),
        ([None, None], "text"),
    ],
)
def test_inference_rules(values, expected) -> None:
    assert _infer(values) == expected


def test_offsets_are_normalized_to_utc() -> None:
    frame = pl.DataFrame({"t": ["2013-01-01T05:00:00-05:00", "2013-01-01T10:00:00Z"]})
    typed = apply_schema("t", frame)
    assert typed.types == {"t": "datetime"}
    assert typed.frame["t"].dtype == pl.Datetime("us", "UTC")
    assert typed.frame["t"][0] == typed.frame["t"][1]


texts = st.lists(
    st.one_of(
        st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.text(alphabet="0123456789.-eE+ aZ:T", max_size=12),
        st.none(),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(texts)
def test_inferred_types_never_quarantine_or_change_a_value(values) -> None:
    frame = pl.DataFrame({"c": values}, schema={"c": pl.String})
    typed = apply_schema("t", frame)
    assert typed.quarantine.height == 0
    assert typed.frame.height == len(values)
    kind = typed.types["c"]
    for raw, value in zip(values, typed.frame["c"].to_list(), strict=True):
        if raw is None:
            assert value is None
        elif kind == "int":
            assert value == int(raw)
        elif kind == "float":
            assert value == float(raw)
        elif kind == "text":
            assert value == raw


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1), min_size=1))
def test_integers_are_inferred_as_int_exactly(numbers) -> None:
    frame = pl.DataFrame({"c": [str(n) for n in numbers]})
    typed = apply_schema("t", frame)
    assert typed.types["c"] == "int"
    assert typed.frame["c"].to_list() == numbers
