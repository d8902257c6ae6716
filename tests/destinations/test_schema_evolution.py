"""Schema changes on load: types widen along the lattice under ``evolve``, narrower
incoming types are cast up, and ``freeze`` refuses any change and writes nothing."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from featurepipe.destinations import LOAD_ID, LOADED_AT, Destination
from featurepipe.destinations.schema_evolution import wider_type
from featurepipe.errors import SchemaError


def _table(destination: Destination, version: int | None = None) -> pl.DataFrame:
    frame, _ = destination.read("t", version)
    return frame.collect().drop(LOAD_ID, LOADED_AT).sort("k")


@pytest.mark.parametrize(
    ("stored", "incoming", "expected"),
    [
        (pl.Int16(), pl.Int64(), pl.Int64()),  # widen the column
        (pl.Int64(), pl.Int16(), pl.Int64()),  # cast the incoming values up
        (pl.Boolean(), pl.Int8(), pl.Int8()),
        (pl.Int32(), pl.Float64(), pl.Float64()),
        (pl.Float32(), pl.Float64(), pl.Float64()),
        (pl.Float64(), pl.Float32(), pl.Float64()),
        (pl.Float32(), pl.Int64(), pl.Float64()),  # 32-bit floats do not hold int64
        (pl.Int64(), pl.UInt64(), pl.Decimal(20, 0)),  # neither holds the other
        (pl.Decimal(10, 2), pl.Int64(), pl.Decimal(21, 2)),
        (pl.UInt8(), pl.Int16(), pl.Int16()),
        (pl.Date(), pl.Datetime("us"), pl.Datetime("us")),
        (pl.Categorical(), pl.String(), pl.String()),
        (pl.String(), pl.Categorical(), pl.String()),
        (pl.Int64(), pl.String(), pl.String()),
        (pl.Int64(), pl.Null(), pl.Int64()),
        (pl.Null(), pl.Int64(), pl.Int64()),
        (pl.Datetime("us", "UTC"), pl.Int64(), None),  # only text holds both: refused
        (pl.Duration("us"), pl.String(), None),
    ],
)
def test_wider_type_follows_the_lattice(stored, incoming, expected) -> None:
    assert wider_type(stored, incoming) == expected


def test_wider_types_evolve_the_table_and_convert_stored_values(destination: Destination) -> None:
    first = pl.DataFrame(
        {"k": [1], "x": [2], "flag": [True], "d": [date(2024, 1, 2)], "c": ["a"], "s": [5]},
        schema={"k": pl.Int16, "x": pl.Int32, "flag": pl.Boolean, "d": pl.Date,
                "c": pl.Categorical, "s": pl.Int64},
    )  # fmt: skip
    v1 = destination.write("t", first, load_id="L1", mode="append").version
    wider = pl.DataFrame(
        {"k": [2], "x": [0.5], "flag": [3], "d": [datetime(2024, 1, 3, 4, 5)], "c": ["b"],
         "s": ["six"]},
        schema={"k": pl.Int64, "x": pl.Float64, "flag": pl.Int8, "d": pl.Datetime("us"),
                "c": pl.String, "s": pl.String},
    )  # fmt: skip
    destination.write("t", wider, load_id="L2", mode="append")
    table = _table(destination)
    assert table.schema == wider.schema
    assert table.rows() == [
        (1, 2.0, 1, datetime(2024, 1, 2), "a", "5"),
        (2, 0.5, 3, datetime(2024, 1, 3, 4, 5), "b", "six"),
    ]
    assert destination.loads()["load_id"].to_list() == ["L1", "L2"]
    # Delta reads version 1 as it was written; PostgreSQL and SQLite in today's types
    pinned = _table(destination, v1).cast(dict(table.schema))  # type: ignore[arg-type]
    assert pinned.rows() == [(1, 2.0, 1, datetime(2024, 1, 2), "a", "5")]


def test_booleans_widened_to_text_read_as_polars_spells_them(destination: Destination) -> None:
    destination.write("t", pl.DataFrame({"k": [1, 2], "b": [True, False]}), load_id="L1")
    frame = pl.DataFrame({"k": [3], "b": ["maybe"]})
    destination.write("t", frame, load_id="L2", mode="append")
    assert _table(destination)["b"].to_list() == ["true", "false", "maybe"]


def test_narrower_incoming_types_are_cast_up_even_under_freeze(destination: Destination) -> None:
    schema = {"k": pl.Int64, "x": pl.Float64, "c": pl.String, "n": pl.Int64}
    destination.write(
        "t", pl.DataFrame({"k": [1], "x": [1.5], "c": ["a"], "n": [7]}, schema=schema),
        load_id="L1", mode="append",
    )  # fmt: skip
    narrow = pl.DataFrame(
        {"k": [2], "x": [3], "c": ["b"], "n": [None]},
        schema={"k": pl.Int8, "x": pl.Int32, "c": pl.Categorical, "n": pl.Null},
    )
    destination.write("t", narrow, load_id="L2", mode="append", schema_mode="freeze")
    table = _table(destination)
    assert table.schema == pl.Schema(schema)
    assert table.rows() == [(1, 1.5, "a", 7), (2, 3.0, "b", None)]


def test_a_merge_that_widens_keeps_columns_the_batch_lacks(destination: Destination) -> None:
    first = pl.DataFrame(
        {"k": [1, 2, 3], "v": [10, 20, 30], "w": ["a", "b", "c"]},
        schema={"k": pl.Int32, "v": pl.Int16, "w": pl.String},
    )
    destination.write("t", first, load_id="L1", mode="merge", primary_key=["k"])
    batch = pl.DataFrame(
        {"k": [2, 3, 4], "v": [2.5, 3.5, 4.5], "gone": [False, True, False]},
        schema={"k": pl.Int64, "v": pl.Float64, "gone": pl.Boolean},
    )
    destination.write(
        "t", batch, load_id="L2", mode="merge", primary_key=["k"], delete_column="gone"
    )
    table = _table(destination)
    assert table.schema == pl.Schema({"k": pl.Int64, "v": pl.Float64, "w": pl.String})
    assert table.rows() == [(1, 10.0, "a"), (2, 2.5, "b"), (4, 4.5, None)]


def test_freeze_refuses_a_wider_type_and_writes_nothing(destination: Destination) -> None:
    first = pl.DataFrame({"k": [1], "v": ["a"]}, schema={"k": pl.Int32, "v": pl.String})
    version = destination.write("t", first, load_id="L1", mode="append").version
    for mode in ("append", "merge", "replace"):
        with pytest.raises(SchemaError, match=r"'k' widened \(Int32 -> Int64\).*'freeze'"):
            destination.write(
                "t", pl.DataFrame({"k": [2], "v": ["b"]}), load_id="L2", mode=mode,
                primary_key=["k"] if mode == "merge" else (), schema_mode="freeze",
            )  # fmt: skip
    assert _table(destination).rows() == [(1, "a")]
    assert _table(destination).schema["k"] == pl.Int32
    assert destination.version("t") == version
    assert destination.loads()["load_id"].to_list() == ["L1"]


def test_a_change_no_wider_type_holds_is_refused(destination: Destination) -> None:
    stamp = pl.DataFrame({"k": [1], "at": [datetime(2024, 1, 1)]}).with_columns(
        pl.col("at").dt.replace_time_zone("UTC")
    )
    destination.write("t", stamp, load_id="L1", mode="append")
    with pytest.raises(SchemaError, match=r"table 't': .*no common wider type: at \(Datetime"):
        destination.write("t", pl.DataFrame({"k": [2], "at": [5]}), load_id="L2", mode="append")
    assert destination.loads()["load_id"].to_list() == ["L1"]
