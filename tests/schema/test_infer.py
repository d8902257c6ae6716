"""Type inference from raw text values: the rules, and the lossless property."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurepipe.schema import InferenceOptions, apply_schema, infer_column, infer_types


def _infer(values: list[str | None], **options) -> str:
    ctype = infer_column(pl.Series(values, dtype=pl.String), InferenceOptions(**options))
    return ctype.describe()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "-2", "0", None], "int8"),
        (["1", "300"], "int16"),
        (["1,234", "12", "-1,000,000"], "int32"),  # thousands separators
        (["9223372036854775807"], "int64"),
        (["12345678901234567890"], "uint64"),  # beyond int64, within uint64
        (["123456789012345678901234567890"], "decimal(30,0)"),
        (["007", "12"], "text"),  # an integer would drop the leading zeros
        (["yes", "no", "Y", "n"], "bool"),
        (["TRUE", "false", "t"], "bool"),
        (["0", "1", "1"], "bool"),  # 0/1 and nothing else
        (["0", "1", "2"], "int8"),
        (["F"], "text"),  # a lone letter may be a code, not a flag
        (["1", "2.5", "-.5", "1e3"], "float"),
        (["10.357019999999999", "1.5"], "float"),  # 17 digits that read back as written
        (["0.12345678901234567"], "decimal(18,17)"),  # a float would change it: exact decimal
        (["1e400"], "text"),  # a float would make it inf
        (["12.50", "3.25", "7"], "decimal(4,2)"),  # a fixed scale with a kept zero: money
        (["$1,234.50", "$3", "-$0.75"], "decimal(6,2) $"),
        (["12 €", "3,50 €"], "text"),  # decimal comma: not a number we read losslessly
        (["12.5%", "3%"], "float %"),
        (["2013-01-01", "2013-12-31"], "date %Y-%m-%d"),
        (["2013-02-30"], "text"),  # no such day
        (["13/01/2013", "01/02/2013"], "date %d/%m/%Y"),  # day first: 13 cannot be a month
        (["01/13/2013", "01/02/2013"], "date %m/%d/%Y"),  # month first
        (["01.02.2013", "28.02.2013"], "date %d.%m.%Y"),
        (["01/02/2013"], "text"),  # ambiguous and no day_first: not guessed
        (["2013-01-01T10:00:00Z", "2013-01-01T05:00:00-05:00"], "datetime %Y-%m-%dT%H:%M:%S%.f%#z"),
        (["2013-01-01 10:00", "2013-01-02 11:30"], "local_datetime %Y-%m-%d %H:%M"),
        (["2013-01-01 10:00", "2013-01-02 11:30Z"], "text"),  # instants mixed with wall clock
        (["2013-01-01", "2013-01-02 11:30"], "text"),  # dates mixed with datetimes
        (["10:30", "23:59"], "time %H:%M"),
        (["25:30"], "text"),
        (["PT1H30M", "P2DT3H", "-PT0.5S"], "duration"),
        (['{"a": 1}', '{"b": [1, 2]}'], "json Struct({'a': Int64, 'b': List(Int64)})"),
        (["[1, 2]", "[]"], "json List(Int64)"),
        (['[1, "a"]'], "text"),  # polars would turn 1 into "1"
        (["a", "b", "a", "a"], "categorical"),
        (["a", "b"], "text"),  # every value distinct: not categorical
        (["a", "1"], "text"),
        ([None, None], "text"),
    ],
)
def test_inference_rules(values, expected) -> None:
    assert _infer(values) == expected


def test_day_first_option_decides_ambiguous_dates() -> None:
    assert _infer(["01/02/2013"], day_first=True) == "date %d/%m/%Y"
    assert _infer(["01/02/2013"], day_first=False) == "date %m/%d/%Y"
    note = infer_column(pl.Series(["01/02/2013"])).note
    assert note is not None and "day_first" in note


def test_categorical_limit_turns_categorical_off() -> None:
    assert _infer(["a", "a", "b"], categorical_limit=0) == "text"


def test_offsets_are_normalized_to_utc() -> None:
    frame = pl.DataFrame({"t": ["2013-01-01T05:00:00-05:00", "2013-01-01T10:00:00Z"]})
    typed = apply_schema("t", frame)
    assert typed.types == {"t": "datetime"}
    assert typed.frame["t"].dtype == pl.Datetime("us", "UTC")
    assert typed.frame["t"][0] == typed.frame["t"][1]


def test_money_percent_duration_and_json_values() -> None:
    frame = pl.DataFrame(
        {
            "m": ["$1,234.50", "-$0.75"],
            "p": ["12.5%", "3%"],
            "d": ["PT1H30M", "-P1DT0.5S"],
            "j": ['{"a": 1}', '{"a": 2, "b": "x"}'],
        }
    )
    row = apply_schema("t", frame).frame.rows(named=True)
    assert [r["m"] for r in row] == [Decimal("1234.50"), Decimal("-0.75")]
    assert [r["p"] for r in row] == [0.125, 0.03]
    assert [r["d"] for r in row] == [
        timedelta(hours=1, minutes=30),
        -timedelta(days=1, seconds=0.5),
    ]
    assert [r["j"] for r in row] == [{"a": 1, "b": None}, {"a": 2, "b": "x"}]


def test_infer_types_names_logical_types() -> None:
    frame = pl.DataFrame({"a": ["1"], "b": ["x"]})
    assert infer_types(frame) == {"a": "int8", "b": "text"}


# ---- property tests: typed values rendered to text in varied formats infer back exactly ----

texts = st.lists(
    st.one_of(
        st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.text(alphabet="0123456789.,-eE+ aZ:T/%$", max_size=12),
        st.none(),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_inferred_types_never_quarantine_or_change_a_value(values) -> None:
    frame = pl.DataFrame({"c": values}, schema={"c": pl.String})
    typed = apply_schema("t", frame, null_values=[])
    assert typed.quarantine.height == 0
    assert typed.frame.height == len(values)
    kind = typed.types["c"]
    for raw, value in zip(values, typed.frame["c"].to_list(), strict=True):
        if raw is None:
            assert value is None
        elif kind.startswith(("int", "uint")) and "," not in raw:
            assert value == int(raw)
        elif kind == "float" and "%" not in raw and "," not in raw:
            assert value == float(raw)
        elif kind == "decimal" and "," not in raw and "$" not in raw:
            assert value == Decimal(raw.strip())
        elif kind in ("text", "categorical"):
            assert value == raw
        else:
            assert value is not None


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=1),
    st.booleans(),
)
def test_integers_infer_back_with_or_without_thousands_separators(numbers, grouped) -> None:
    frame = pl.DataFrame({"c": [f"{n:,}" if grouped else str(n) for n in numbers]})
    typed = apply_schema("t", frame)
    assert typed.types["c"].startswith("int")
    assert typed.frame["c"].to_list() == numbers


_DATE_FORMATS = ["%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)), min_size=1),
    st.sampled_from(_DATE_FORMATS),
)
def test_dates_infer_back_in_every_format(days, fmt) -> None:
    # the data has to show the day/month order: add one day above the 12th
    days = [*days, date(2013, 1, 13)]
    frame = pl.DataFrame({"c": [d.strftime(fmt) for d in days]})
    typed = apply_schema("t", frame)
    assert typed.types["c"] == "date"
    assert typed.frame["c"].to_list() == days


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)),
            st.sampled_from(["Z", "+00:00", "-05:00", "+05:30"]),
        ),
        min_size=1,
    ),
    st.sampled_from(["T", " "]),
)
def test_datetimes_with_offsets_infer_back_as_the_same_instant(stamps, separator) -> None:
    from datetime import timezone

    def offset(text: str) -> timezone:
        if text == "Z":
            return UTC
        sign = -1 if text[0] == "-" else 1
        return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))

    rendered = [d.strftime(f"%Y-%m-%d{separator}%H:%M:%S.%f") + off for d, off in stamps]
    typed = apply_schema("t", pl.DataFrame({"c": rendered}))
    assert typed.types["c"] == "datetime"
    expected = [d.replace(tzinfo=offset(off)).astimezone(UTC) for d, off in stamps]
    assert typed.frame["c"].to_list() == expected


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.decimals(min_value=-(10**9), max_value=10**9, places=2), min_size=1),
    st.sampled_from(["{}", "${}"]),
)
def test_money_with_a_fixed_scale_infers_back_as_exact_decimals(amounts, pattern) -> None:
    amounts = [*amounts, Decimal("0.10")]  # a kept trailing zero shows the fixed scale
    rendered = [("-" if a < 0 else "") + pattern.format(f"{abs(a):.2f}") for a in amounts]
    typed = apply_schema("t", pl.DataFrame({"c": rendered}))
    assert typed.types["c"] == "decimal"
    assert typed.frame["c"].to_list() == amounts


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.booleans(), min_size=2).filter(lambda b: len(set(b)) == 2),
    st.sampled_from([("yes", "no"), ("Y", "N"), ("true", "false"), ("T", "F"), ("1", "0")]),
)
def test_flags_infer_back_as_booleans(flags, tokens) -> None:
    typed = apply_schema("t", pl.DataFrame({"c": [tokens[0] if f else tokens[1] for f in flags]}))
    assert typed.types["c"] == "bool"
    assert typed.frame["c"].to_list() == flags
