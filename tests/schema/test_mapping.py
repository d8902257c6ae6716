"""Destination type mapping: every polars type round-trips or maps as documented."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from featurepipe.destinations import LOAD_ID, LOADED_AT
from featurepipe.errors import SchemaError
from featurepipe.schema.mapping import LOGICAL, logical_type, render_markdown, to_destination
from featurepipe.schema.types import LOGICAL_TYPES
from tests.destinations.conftest import KINDS, drop_pg_schema, make_destination, new_pg_schema

REPO = Path(__file__).resolve().parents[2]

EVERY_TYPE = pl.DataFrame(
    {
        "bool": [True, False, None],
        "int8": pl.Series([-128, 127, None], dtype=pl.Int8),
        "int16": pl.Series([-1, 2, None], dtype=pl.Int16),
        "int32": pl.Series([-(2**31), 2**31 - 1, None], dtype=pl.Int32),
        "int64": pl.Series([-(2**63), 2**63 - 1, None], dtype=pl.Int64),
        "uint8": pl.Series([0, 255, None], dtype=pl.UInt8),
        "uint16": pl.Series([0, 65535, None], dtype=pl.UInt16),
        "uint32": pl.Series([0, 2**32 - 1, None], dtype=pl.UInt32),
        "uint64": pl.Series([0, 2**64 - 1, None], dtype=pl.UInt64),
        "float32": pl.Series([1.5, float("-inf"), None], dtype=pl.Float32),
        "float": [0.1, float("inf"), None],
        "decimal": pl.Series([Decimal("12345.67"), Decimal("-0.01"), None], dtype=pl.Decimal(9, 2)),
        "text": ["", 'naïve, "quoted"\nline', None],
        "categorical": pl.Series(["x", "y", None], dtype=pl.Categorical),
        "binary": [b"\x00\xff", b"", None],
        "date": [dt.date(2013, 1, 1), dt.date(1, 1, 1), None],
        "time": [dt.time(23, 59, 59, 999999), dt.time(0), None],
        "local_datetime": [dt.datetime(2013, 1, 1, 5, 15, 0, 7), dt.datetime(1970, 1, 1), None],
        "datetime": pl.Series(
            [dt.datetime(2013, 3, 10, 1, 59), dt.datetime(2013, 11, 3, 12), None]
        ).dt.replace_time_zone("America/New_York"),
        "duration": [dt.timedelta(days=-1, microseconds=3), dt.timedelta(0), None],
        "list": [[1, 2], [], None],
        "struct": [{"a": 1, "b": "x"}, {"a": None, "b": None}, None],
        "null": pl.Series([None, None, None], dtype=pl.Null),
    }
)

# What Delta gives back where it has no such type (documented in docs/types.md).
DELTA_READS_BACK = {
    "uint8": pl.Int16,
    "uint16": pl.Int32,
    "uint32": pl.Int64,
    "uint64": pl.Decimal(20, 0),
    "categorical": pl.String,
    "time": pl.String,
    "datetime": pl.Datetime("us", "UTC"),
    "duration": pl.Int64,
    "null": pl.String,
}


def test_docs_types_md_is_generated_from_the_code() -> None:
    committed = (REPO / "docs" / "types.md").read_text(encoding="utf-8")
    assert committed == render_markdown(), (
        "run: python -m featurepipe.schema.mapping > docs/types.md"
    )


def test_every_logical_type_is_covered_by_the_round_trip_frame() -> None:
    assert {logical_type(t) for t in EVERY_TYPE.dtypes} == set(LOGICAL)


@pytest.fixture
def schema() -> Iterator[str]:
    name = new_pg_schema()
    yield name
    drop_pg_schema(name)


@pytest.mark.parametrize("kind", KINDS)
def test_every_type_round_trips(kind: str, tmp_path: Path, schema: str) -> None:
    destination = make_destination(kind, tmp_path, schema)
    destination.write("every", EVERY_TYPE, load_id="L", mode="replace")
    back = destination.read("every")[0].collect().drop(LOAD_ID, LOADED_AT)
    if kind == "delta":
        expected = to_destination("delta", "every", EVERY_TYPE)
        assert {c: back.schema[c] for c in DELTA_READS_BACK} == DELTA_READS_BACK
        assert back.equals(expected.select(back.columns))
    else:
        assert back.schema == EVERY_TYPE.schema
        assert back.equals(EVERY_TYPE)


@pytest.mark.parametrize(
    ("kind", "frame", "message"),
    [
        ("sqlite", pl.DataFrame({"x": [1.0, float("nan")]}), "'x': 1 values .*NaN.*row 2"),
        ("postgres", pl.DataFrame({"s": ["ok", "a\x00b"]}), "'s': 1 values .*NUL.*row 2"),
        (
            "delta",
            pl.DataFrame({"ts": [dt.datetime(2013, 1, 1)]}).with_columns(
                pl.col("ts").cast(pl.Datetime("ns")) + pl.duration(nanoseconds=1)
            ),
            "'ts': 1 values .*sub-microsecond",
        ),
    ],
)
def test_lossy_values_are_refused_and_nothing_is_written(
    kind: str, frame: pl.DataFrame, message: str, tmp_path: Path, schema: str
) -> None:
    destination = make_destination(kind, tmp_path, schema)
    with pytest.raises(SchemaError, match=message):
        destination.write("t", frame, load_id="L")
    assert destination.tables() == [] and destination.loads().height == 0


def test_unmappable_type_is_a_clear_error() -> None:
    frame = pl.DataFrame({"o": pl.Series([object()], dtype=pl.Object)})
    with pytest.raises(SchemaError, match="table 't', column 'o'.*no destination mapping"):
        to_destination("postgres", "t", frame)


def test_logical_type_names_are_those_of_hints_and_stored_schemas() -> None:
    # one vocabulary: a name types.py and mapping.py both use means the same dtype
    for name, dtype in LOGICAL_TYPES.items():
        if name == "json":  # stored as the list or struct it decodes to
            assert {"list", "struct"} <= set(LOGICAL)
            continue
        assert logical_type(dtype) == name, name
