"""The embedded Delta Lake destination: atomic writes, lineage columns, pinned reads."""

from __future__ import annotations

import polars as pl
import pytest

from featurepipe.destinations import DeltaDestination
from featurepipe.destinations.delta import LOAD_ID, LOADED_AT
from featurepipe.errors import DestinationError


def test_write_read_and_pinned_versions(tmp_path) -> None:
    warehouse = DeltaDestination(tmp_path / "warehouse")
    assert warehouse.tables() == [] and warehouse.version("t") is None

    first = warehouse.write("t", pl.DataFrame({"k": [1, 2]}), load_id="L1")
    second = warehouse.write("t", pl.DataFrame({"k": [3]}), load_id="L2", mode="append")
    third = warehouse.write("t", pl.DataFrame({"k": [9]}), load_id="L3", mode="replace")
    assert (first.version, second.version, third.version) == (0, 1, 2)
    assert warehouse.tables() == ["t"]

    latest, version = warehouse.read("t")
    assert version == 2
    assert latest.collect()["k"].to_list() == [9]
    pinned, version = warehouse.read("t", version=1)
    frame = pinned.collect().sort("k")
    assert version == 1
    assert frame["k"].to_list() == [1, 2, 3]
    assert frame[LOAD_ID].to_list() == ["L1", "L1", "L2"]
    assert frame[LOADED_AT].dtype == pl.Datetime("us", "UTC")


def test_types_delta_lacks_are_mapped(tmp_path) -> None:
    warehouse = DeltaDestination(tmp_path)
    frame = pl.DataFrame(
        {"u8": [1], "u32": [2], "cat": ["a"]},
        schema={"u8": pl.UInt8, "u32": pl.UInt32, "cat": pl.Categorical},
    )
    warehouse.write("t", frame, load_id="L")
    schema = warehouse.read("t")[0].collect_schema()
    assert (schema["u8"], schema["u32"], schema["cat"]) == (pl.Int16, pl.Int64, pl.String)


def test_missing_table_or_version_is_a_clear_error(tmp_path) -> None:
    warehouse = DeltaDestination(tmp_path)
    with pytest.raises(DestinationError, match="table 'nope' not found.*ingest"):
        warehouse.read("nope")
    warehouse.write("t", pl.DataFrame({"k": [1]}), load_id="L")
    with pytest.raises(DestinationError, match="table 't' at version 7"):
        warehouse.read("t", version=7)


def test_loads_into_an_existing_table_commit_polars_parquet_read_back_as_strings(tmp_path) -> None:
    warehouse = DeltaDestination(tmp_path)
    frame = pl.DataFrame({"k": [1, 2], "c": pl.Series(["a", None], dtype=pl.Categorical)})
    warehouse.write("t", frame, load_id="L1", mode="append")  # creates the table
    before = {p.name for p in (tmp_path / "t").glob("*.parquet")}
    warehouse.write("t", frame, load_id="L2", mode="append")  # polars Parquet + one commit
    [added] = {p.name for p in (tmp_path / "t").glob("*.parquet")} - before
    assert added.startswith("part-") and added.endswith(".zstd.parquet")
    back = warehouse.read("t")[0].collect().sort("k", LOAD_ID)
    assert back.schema["c"] == pl.String and back.schema[LOAD_ID] == pl.String
    assert back.select("k", "c", LOAD_ID).rows() == [
        (1, "a", "L1"), (1, "a", "L2"), (2, None, "L1"), (2, None, "L2")
    ]  # fmt: skip
    assert warehouse.write("t", frame, load_id="L2", mode="append").skipped


@pytest.mark.parametrize("mode", ["append", "replace", "merge"])
def test_a_crash_between_data_commit_and_loads_record_is_repaired_by_the_rerun(
    tmp_path, monkeypatch, mode
) -> None:
    warehouse = DeltaDestination(tmp_path)
    options = {"primary_key": ["k"]} if mode == "merge" else {}
    first = pl.DataFrame({"k": [1, 2], "v": ["a", "b"]})
    warehouse.write("t", first, load_id="L1", mode=mode, **options)
    batch = pl.DataFrame({"k": [2, 3, 4], "v": ["B", "c", "d"]})

    def crash(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("killed between the data commit and the loads record")

    with monkeypatch.context() as patch:
        patch.setattr(DeltaDestination, "_record", crash)
        with pytest.raises(RuntimeError, match="killed"):
            warehouse.write("t", batch, load_id="L2", mode=mode, source="s", **options)
    assert warehouse.version("t") == 1  # the data committed
    assert warehouse.loads()["load_id"].to_list() == ["L1"]  # the record did not
    content = warehouse.read("t")[0].collect().sort("k")
    # a later load commits before the rerun, so the repair must find L2's own commit
    warehouse.write("t", pl.DataFrame({"k": [9], "v": ["z"]}), load_id="L3", mode="append")
    after_l3 = warehouse.read("t")[0].collect().sort("k")

    rerun = warehouse.write("t", batch, load_id="L2", mode=mode, source="s", **options)
    assert rerun.skipped and rerun.version == 1
    assert warehouse.version("t") == 2  # nothing written again
    assert warehouse.read("t")[0].collect().sort("k").equals(after_l3)
    assert warehouse.read("t", version=1)[0].collect().sort("k").equals(content)
    loads = warehouse.loads().filter(pl.col("load_id") == "L2")
    assert loads.select("source", "table", "rows", "disposition", "version").rows() == [
        ("s", "t", 3, mode, 1)
    ]
    again = warehouse.write("t", batch, load_id="L2", mode=mode, source="s", **options)
    assert again.skipped and warehouse.loads()["load_id"].to_list() == ["L1", "L3", "L2"]
