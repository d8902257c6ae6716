"""Staged rows: batches spooled to disk load as one transaction, equal to the same rows
loaded from memory, on every destination and disposition."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from featurepipe.destinations import LOAD_ID, LOADED_AT, Destination
from featurepipe.destinations import staged as staged_module
from featurepipe.destinations.staged import StagedRows
from featurepipe.errors import SchemaError
from tests.destinations.conftest import make_destination

BATCHES = [
    pl.DataFrame({"k": [1, 2], "v": pl.Series([10, 20], dtype=pl.Int16), "c": ["a", "b"]}),
    pl.DataFrame({"k": [3, 4], "v": pl.Series([30, 40], dtype=pl.Int16), "c": ["c", "d"]}),
    # a later batch widened v, and repeats key 2 (its last row wins)
    pl.DataFrame({"k": [2, 5], "v": [25.5, 50.0], "c": ["e", None]}),
]
WHOLE = pl.DataFrame({"k": [1, 3, 4, 2, 5], "v": [10.0, 30.0, 40.0, 25.5, 50.0]}).with_columns(
    c=pl.Series(["a", "c", "d", "e", None])
)


def _rows(destination: Destination, table: str) -> pl.DataFrame:
    return destination.read(table)[0].collect().drop(LOAD_ID, LOADED_AT).sort("k")


def _staged(tmp_path: Path, batches: list[pl.DataFrame]) -> StagedRows:
    staged = StagedRows("t", tmp_path)
    for batch in batches:
        staged.add(batch)
    return staged


def test_staged_rows_read_back_in_the_widest_type_with_superseded_keys_dropped(
    tmp_path: Path,
) -> None:
    with _staged(tmp_path, BATCHES) as staged:
        assert staged.schema == pl.Schema({"k": pl.Int64, "v": pl.Float64, "c": pl.String})
        assert staged.drop_superseded(["k"]) == 1
        assert staged.height == 5
        assert staged.collect().sort("k").equals(WHOLE.sort("k"))
        assert staged.columns(["k"])["k"].sort().to_list() == [1, 2, 3, 4, 5]
        with _staged(tmp_path, BATCHES[:1]) as other:
            combined = StagedRows.combine("all", [staged, other])
            assert not combined.folder.exists()  # reads the parts' files, has none of its own
            assert combined.height == 7 and combined.collect()["k"].to_list()[-2:] == [1, 2]
        folder = staged.folder
    assert not folder.exists()


@pytest.mark.parametrize("mode", ["append", "replace", "merge"])
def test_staged_rows_load_as_the_same_rows_from_memory(
    destination: Destination, tmp_path: Path, mode: str
) -> None:
    first = pl.DataFrame({"k": [2, 9], "v": [1.0, 9.0], "c": ["old", "x"]})
    for table in ("memory", "staged"):
        destination.write(table, first, load_id="L1", mode="replace")
    key = ["k"] if mode == "merge" else []
    destination.write("memory", WHOLE, load_id="L2", mode=mode, primary_key=key)  # type: ignore[arg-type]
    with _staged(tmp_path, BATCHES) as staged:
        staged.drop_superseded(["k"])
        result = destination.write(
            "staged",
            staged,
            load_id="L2",
            mode=mode,
            primary_key=key,  # type: ignore[arg-type]
        )
    assert result.rows == 5 and not result.skipped
    assert _rows(destination, "staged").equals(_rows(destination, "memory"))
    loads = destination.loads().filter(pl.col("load_id") == "L2")
    assert loads["rows"].to_list() == [5, 5]


@pytest.mark.parametrize(
    ("kind", "late"),
    [
        ("sqlite", pl.DataFrame({"k": [7], "v": [float("nan")], "c": ["z"]})),  # NaN: NULL
        ("postgres", pl.DataFrame({"k": [7], "v": [7.0], "c": ["\x00"]})),  # NUL in text
    ],
)
def test_a_late_batch_the_destination_refuses_leaves_the_table_as_it_was(
    kind: str, late: pl.DataFrame, tmp_path: Path, pg_schema: str
) -> None:
    destination = make_destination(kind, tmp_path, pg_schema)
    destination.write("t", BATCHES[0], load_id="L1", mode="replace")
    # the refused value is the third row of the load: the message numbers rows in the load
    where = r"1 values in the batch from row 3 .*first at row 3\)"
    with _staged(tmp_path, [BATCHES[1], late]) as staged, pytest.raises(SchemaError, match=where):
        destination.write("t", staged, load_id="L2", mode="append")
    assert _rows(destination, "t").equals(BATCHES[0].sort("k"))
    assert destination.loads()["load_id"].to_list() == ["L1"]


def _far_apart(batches: int = 30, rows: int = 100) -> list[pl.DataFrame]:
    """Batches of distinct keys whose keys repeat batches apart: batch 0's keys 0-9 again in
    the last batch, keys 100-104 in three batches; ``u`` repeats across batches too."""
    frames = []
    for b in range(batches):
        keys = list(range(b * rows, (b + 1) * rows))
        if b == batches - 1:
            keys[:10] = range(10)
        if b in (15, 28):
            keys[50:55] = range(100, 105)
        frames.append(
            pl.DataFrame({"k": keys, "v": [f"{b}:{i}" for i in range(rows)]})
            .with_columns(
                u=pl.col("k") % 1_450, pair=pl.struct(a=pl.col("k") % 7, b=pl.col("k") % 1_000)
            )
            .unnest("pair")
        )
    return frames


@pytest.mark.parametrize("part_rows", [64, 1 << 19])
def test_keys_repeated_batches_apart_are_dropped_as_the_whole_table_drops_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part_rows: int
) -> None:
    monkeypatch.setattr(staged_module, "PART_ROWS", part_rows)  # 64: keys spilled in ~47 parts
    batches = _far_apart()
    whole = pl.concat(batches)
    kept = whole.unique(subset=["k"], keep="last", maintain_order=True)  # as clean_table
    with _staged(tmp_path, batches) as staged:
        parts = list(staged.column_parts(["k"]))
        assert (len(parts) > 40) is (part_rows == 64)
        assert sum(v.height for v, _ in parts) == whole.height
        assert staged.drop_superseded(["k"]) == whole.height - kept.height == 20
        assert staged.height == kept.height and staged.collect().equals(kept)
        assert staged.drop_superseded(["k"]) == 0  # nothing left to drop
        assert not list(staged.folder.glob("parts-*"))  # the spilled parts are removed
