"""Streamed ingest (``Ingest.stage``): batches typed, cleaned, checked and staged on disk
load the same rows as the whole-table path, and a batch failing the gate, however late,
loads nothing and moves no state, on every destination."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

import featurepipe as fp
from featurepipe.destinations import LOAD_ID, LOADED_AT, Destination
from featurepipe.errors import ValidationFailed
from tests.destinations.conftest import KINDS, drop_pg_schema, make_destination, new_pg_schema

from .conftest import copy_project

SOURCE = """[sources.orders]
path = "drops/*.csv"
incremental = true
write_disposition = "append"
primary_key = ["id"]
batch_rows = 2
columns = { amount = "float" }

"""
SUITE = {
    "name": "orders",
    "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "amount", "min_value": 0, "max_value": 1000},
        },
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "code"}},
    ],
}
# batches of 2 rows: key 2 comes again in the third batch (its last row wins), amount
# widens from integers to decimals there, and "oops" is quarantined in the fourth
ORDERS = "id,amount,code\n1,10,a\n2,20,b\n3,30,c\n4,40,d\n2,25,e\n5,7.5,f\n6,oops,g\n"


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


def _project(folder: Path) -> Path:
    project = copy_project(folder)
    toml = project / "featurepipe.toml"
    text = toml.read_text()
    start, end = text.index("# ---- sources"), text.index("# ---- features")
    toml.write_text(text[:start] + SOURCE + text[end:])
    (project / "drops").mkdir()
    (project / "drops" / "a.csv").write_text(ORDERS)
    (project / "expectations" / "orders.json").write_text(json.dumps(SUITE))
    return project


@pytest.fixture
def places(tmp_path: Path, kind: str) -> Iterator[dict[str, tuple[Path, Destination]]]:
    """Two copies of a project with one file source, each with an empty ``kind`` destination:
    one loaded whole, one streamed."""
    schemas = {"whole": new_pg_schema(), "streamed": new_pg_schema()}
    yield {
        how: (_project(tmp_path / how), make_destination(kind, tmp_path / how, schema))
        for how, schema in schemas.items()
    }
    if kind == "postgres":
        for schema in schemas.values():
            drop_pg_schema(schema)


def _whole(project: Path, destination: Destination, load_id: str) -> pl.DataFrame:
    """The in-memory path of notebooks/01_ingest; returns the quarantine."""
    config = fp.load_config(project)
    ingest = fp.Ingest(config, load_id, destination=destination)
    raw = ingest.extract()["orders"]
    typed = fp.apply_schema(
        "orders", raw, **config.sources["orders"].typing_options(), load_id=load_id
    )
    cleaned = fp.clean_table("orders", typed.frame, ["id"])
    fp.require_valid(fp.validate_tables({"orders": cleaned.frame}, project / "expectations"))
    ingest.load("orders", cleaned.frame, schema_version=str(typed.schema.version))
    ingest.finish()
    return typed.quarantine


def _streamed(
    project: Path, destination: Destination, load_id: str, *, stream: bool = True
) -> fp.StagedTable:
    ingest = fp.Ingest(fp.load_config(project), load_id, destination=destination)
    staged = ingest.stage(project / "expectations", stream=stream)["orders"]
    ingest.gate()
    ingest.load("orders", staged.rows, schema_version=str(staged.schema.version))
    destination.write("_quarantine", ingest.quarantine(), load_id=load_id, mode="append")
    ingest.finish()
    return staged


def _rows(destination: Destination, table: str) -> pl.DataFrame:
    return destination.read(table)[0].collect().drop(LOAD_ID, LOADED_AT).sort(pl.all())


@pytest.mark.parametrize("stream", [True, False])
def test_staged_ingest_loads_what_the_whole_table_path_loads(places, stream: bool) -> None:
    quarantine = _whole(*places["whole"], "L1")
    staged = _streamed(*places["streamed"], "L1", stream=stream)
    destinations = {how: destination for how, (_, destination) in places.items()}

    assert staged.batches == (4 if stream else 1) and staged.rows_in == 7
    assert staged.duplicates_removed == 1 and staged.rows_quarantined == 1
    assert staged.types == {"id": "int8", "amount": "float", "code": "text"}
    assert staged.schema.version == 1
    whole, streamed = (_rows(destinations[how], "orders") for how in ("whole", "streamed"))
    assert streamed.equals(whole) and streamed.height == 5
    assert (
        _rows(destinations["streamed"], "_quarantine")
        .drop("load_id")
        .equals(quarantine.drop("load_id").sort(pl.all()))
    )
    assert quarantine["row"].to_list() == [7]  # the source row, counted across batches
    loads = destinations["streamed"].loads().filter(pl.col("table") == "orders")
    assert loads["rows"].to_list() == [5]
    assert not staged.rows.folder.exists()  # finish() removed the staged files


@pytest.mark.parametrize(
    ("late", "failed"),
    [
        ("7,70,h\n8,80,i\n9,5000,j\n", "expect_column_values_to_be_between"),  # last batch
        ("7,70,h\n8,80,i\n9,90,h\n", "expect_column_values_to_be_unique"),  # across batches
    ],
)
def test_a_gate_failure_in_a_late_batch_loads_nothing(places, late: str, failed: str) -> None:
    project, destination = places["streamed"]
    _streamed(project, destination, "L1")
    store = fp.StateStore(project / "warehouse")
    state, rows, loads = store.read("orders"), _rows(destination, "orders"), destination.loads()
    (project / "drops" / "b.csv").write_text("id,amount,code\n" + late)

    ingest = fp.Ingest(fp.load_config(project), "L2", destination=destination)
    staged = ingest.stage(project / "expectations")["orders"]
    assert staged.batches == 2  # the failure is in the second batch of the new file
    assert [f.expectation for f in staged.report.failures] == [failed]
    with pytest.raises(ValidationFailed, match=failed):
        ingest.gate()

    assert not staged.rows.folder.exists()
    assert _rows(destination, "orders").equals(rows)
    assert destination.loads().equals(loads)
    assert store.read("orders") == state


@pytest.mark.e2e  # a real kernel through papermill: the notebook's streamed path
def test_the_ingest_notebook_streams_a_source_in_batches(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    config = fp.load_config(project)
    result = fp.run_flow(config, parameters={"stream": True}, steps=["01_ingest"])

    [summary] = [s.summary for s in result.steps if s.name == "01_ingest"]
    assert summary["tables"] == [
        {"table": "orders", "rows_in": 7, "quarantined": 1, "duplicates": 1,
         "rows_loaded": 5, "version": 0, "expectations": "4/4"},
    ]  # fmt: skip
    orders = fp.read_table("orders", project=project).sort("id")
    assert orders["code"].to_list() == ["a", "e", "c", "d", "f"]
    assert fp.read_table("_quarantine", project=project)["value"].to_list() == ["oops"]
