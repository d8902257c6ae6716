"""Every destination: dispositions, idempotent replays, the loads table, pinned reads, errors."""

from __future__ import annotations

import polars as pl
import pytest

from featurepipe.destinations import LOAD_ID, LOADED_AT, LOADS_TABLE, Destination
from featurepipe.errors import DestinationError, SchemaError
from tests.destinations.conftest import KINDS, make_destination


def _rows(destination: Destination, table: str, version: int | None = None) -> pl.DataFrame:
    frame, _ = destination.read(table, version)
    return frame.collect().drop(LOAD_ID, LOADED_AT).sort(pl.all())


def _content_hash(destination: Destination, table: str) -> int:
    frame = destination.read(table)[0].collect()
    return int(frame.sort(pl.all()).hash_rows().sum())


def test_append_replace_and_lineage(destination: Destination) -> None:
    assert destination.tables() == [] and destination.version("t") is None
    first = destination.write("t", pl.DataFrame({"k": [1, 2]}), load_id="L1", mode="append")
    second = destination.write("t", pl.DataFrame({"k": [3]}), load_id="L2", mode="append")
    assert second.version > first.version and destination.tables() == ["t"]
    frame = destination.read("t")[0].collect().sort("k")
    assert frame["k"].to_list() == [1, 2, 3]
    assert frame[LOAD_ID].to_list() == ["L1", "L1", "L2"]
    assert frame[LOADED_AT].dtype == pl.Datetime("us", "UTC")

    replaced = destination.write("t", pl.DataFrame({"k": [9]}), load_id="L3", mode="replace")
    assert _rows(destination, "t")["k"].to_list() == [9]
    assert destination.versions(["t"]) == {"t": replaced.version}


@pytest.mark.parametrize("mode", ["append", "replace", "merge"])
def test_a_replayed_load_id_is_skipped_three_times(destination: Destination, mode) -> None:
    key = {"primary_key": ["k"]} if mode == "merge" else {}
    destination.write("t", pl.DataFrame({"k": [0, 1], "v": ["x", "y"]}), load_id="L0", **key)
    batch = pl.DataFrame({"k": [1, 2], "v": ["a", "b"]})
    first = destination.write("t", batch, load_id="L1", mode=mode, source="src", **key)
    hashes = {_content_hash(destination, "t")}
    for _ in range(3):
        again = destination.write("t", batch, load_id="L1", mode=mode, source="src", **key)
        assert again.skipped and again.rows == 0 and again.version == first.version
        hashes.add(_content_hash(destination, "t"))
    assert len(hashes) == 1
    assert destination.version("t") == first.version
    expected = {"append": [(0, "x"), (1, "a"), (1, "y"), (2, "b")], "replace": [(1, "a"), (2, "b")]}
    assert _rows(destination, "t").rows() == expected.get(mode, [(0, "x"), (1, "a"), (2, "b")])
    loads = destination.loads()
    assert loads.select("load_id", "source", "table", "rows", "disposition", "state").rows() == [
        ("L0", "", "t", 2, "replace", "committed"), ("L1", "src", "t", 2, mode, "committed")
    ]  # fmt: skip


def test_merge_upserts_deletes_and_replays_to_the_same_table(destination: Destination) -> None:
    destination.write(
        "t", pl.DataFrame({"k": [1, 2, 3], "v": ["a", "b", "c"]}), load_id="L1", mode="merge",
        primary_key=["k"],
    )  # fmt: skip
    batch = pl.DataFrame({"k": [2, 3, 4], "v": ["B", "c", "d"], "gone": [False, True, None]})
    hashes = set()
    for i in range(3):  # the same batch under three load ids: same user content
        destination.write(
            "t", batch, load_id=f"M{i}", mode="merge", primary_key=["k"], delete_column="gone"
        )
        hashes.add(int(_rows(destination, "t").hash_rows().sum()))
    assert len(hashes) == 1
    assert _rows(destination, "t").rows() == [(1, "a"), (2, "B"), (4, "d")]
    lineage = destination.read("t")[0].collect().sort("k")
    assert lineage[LOAD_ID].to_list() == ["L1", "M2", "M2"]  # updated rows carry the new id
    assert lineage[LOADED_AT][1] > lineage[LOADED_AT][0]


def test_pinned_reads_follow_appends(destination: Destination) -> None:
    v1 = destination.write("t", pl.DataFrame({"k": [1]}), load_id="L1", mode="append").version
    v2 = destination.write("t", pl.DataFrame({"k": [2]}), load_id="L2", mode="append").version
    assert _rows(destination, "t", v1)["k"].to_list() == [1]
    assert _rows(destination, "t", v2)["k"].to_list() == [1, 2]
    frame, version = destination.read("t", v1)
    assert version == v1


def test_new_columns_evolve_and_freeze_refuses(destination: Destination) -> None:
    destination.write("t", pl.DataFrame({"k": [1]}), load_id="L1", mode="append")
    with pytest.raises(SchemaError, match=r"table 't': new column 'x' under .*'freeze'"):
        destination.write(
            "t", pl.DataFrame({"k": [2], "x": [0.5]}), load_id="L2", mode="append",
            schema_mode="freeze",
        )  # fmt: skip
    assert _rows(destination, "t")["k"].to_list() == [1]
    assert destination.loads()["load_id"].to_list() == ["L1"]
    destination.write("t", pl.DataFrame({"k": [2], "x": [0.5]}), load_id="L4", mode="append")
    assert _rows(destination, "t").rows() == [(1, None), (2, 0.5)]


def test_bad_load_options_are_refused_before_writing(destination: Destination) -> None:
    frame = pl.DataFrame({"k": [1, 1], "v": ["a", "b"]})
    with pytest.raises(DestinationError, match="merge' needs a primary_key"):
        destination.write("t", frame, load_id="L", mode="merge")
    with pytest.raises(DestinationError, match=r"2 rows share a primary key \['k'\]"):
        destination.write("t", frame, load_id="L", mode="merge", primary_key=["k"])
    with pytest.raises(DestinationError, match="unknown write disposition 'upsert'"):
        destination.write("t", frame, load_id="L", mode="upsert")  # type: ignore[arg-type]
    with pytest.raises(DestinationError, match="reserved"):
        destination.write("t", frame.with_columns(_fp_load_id=pl.lit("x")), load_id="L")
    assert destination.tables() == []


@pytest.mark.parametrize("kind", KINDS)
def test_destinations_refuse_table_names_of_their_own_tables(kind, tmp_path, pg_schema) -> None:
    destination = make_destination(kind, tmp_path, pg_schema)
    destination.write("t", pl.DataFrame({"k": [1]}), load_id="L1")
    frame = pl.DataFrame({"k": [2]})
    for name in (LOADS_TABLE, "_fp_tables", "_fp_mine"):
        with pytest.raises(DestinationError, match=f"'{name}': names starting with _fp_ are"):
            destination.write(name, frame, load_id="L2")
    assert destination.tables() == ["t"]
    assert destination.loads()["load_id"].to_list() == ["L1"]


def test_missing_table_or_version_is_a_clear_error(destination: Destination) -> None:
    with pytest.raises(DestinationError, match="table 'nope' not found.*ingest"):
        destination.read("nope")
    with pytest.raises(DestinationError, match="table 'nope' not found"):
        destination.versions(["nope"])
    destination.write("t", pl.DataFrame({"k": [1]}), load_id="L1", mode="replace")
    destination.write("t", pl.DataFrame({"k": [2]}), load_id="L2", mode="replace")
    with pytest.raises(DestinationError, match="table 't' at version"):
        destination.read("t", version=-5)


def test_pinned_reads_see_each_version_after_merges_and_replaces(destination: Destination) -> None:
    def load(load_id: str, mode: str, data: dict, gone: list[bool] | None = None) -> int:
        frame = pl.DataFrame(data if gone is None else {**data, "gone": gone})
        merge = {"primary_key": ["k"], "delete_column": "gone"} if gone is not None else {}
        return destination.write("t", frame, load_id=load_id, mode=mode, **merge).version

    expected = {
        load("L1", "append", {"k": [1, 2], "v": ["a", "b"]}): [(1, "a"), (2, "b")],
        load("L2", "merge", {"k": [2, 3], "v": ["B", "c"]}, [False, False]): [
            (1, "a"), (2, "B"), (3, "c")
        ],
        load("L3", "merge", {"k": [1, 3], "v": ["x", "C"]}, [True, False]): [(2, "B"), (3, "C")],
        # the replace changes the columns: older versions keep theirs
        load("L4", "replace", {"k": [9], "w": [1.5]}): [(9, 1.5)],
        load("L5", "append", {"k": [10], "w": [2.5]}): [(9, 1.5), (10, 2.5)],
        load("L6", "merge", {"k": [9], "w": [0.5]}, [False]): [(9, 0.5), (10, 2.5)],
        load("L7", "replace", {"k": [7], "w": [7.0]}): [(7, 7.0)],
    }  # fmt: skip
    for version, rows in expected.items():
        frame, read = destination.read("t", version)
        assert read == version
        assert frame.collect().drop(LOAD_ID, LOADED_AT).sort("k").rows() == rows, version
    assert _rows(destination, "t").rows() == [(7, 7.0)]
