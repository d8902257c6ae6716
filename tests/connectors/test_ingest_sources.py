"""HTTP and incremental file sources through the real 01_ingest notebook: typed, cleaned,
validated by Great Expectations and loaded into Delta."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

import featurepipe as fp
from featurepipe.errors import GateFailed
from featurepipe.flow import run_flow

from ..conftest import copy_project
from .http_api import Api
from .push_support import serve_in_thread

pytestmark = pytest.mark.e2e


def _project(root: Path, sources: str, suites: dict[str, list[dict]]) -> Path:
    """The flights project with its sources replaced, and a suite for each new table."""
    project = copy_project(root)
    toml = project / "featurepipe.toml"
    text = toml.read_text()
    start, end = text.index("# ---- sources"), text.index("# ---- features")
    toml.write_text(text[:start] + sources + "\n" + text[end:])
    for name, expectations in suites.items():
        suite = {"name": name, "expectations": expectations, "meta": {}}
        (project / "expectations" / f"{name}.json").write_text(json.dumps(suite))
    return project


def _ingest(project: Path) -> None:
    """Run the 01_ingest step, in this process: the CLI around it (tested in test_cli and
    test_ingest_pull) would cost a Python start and its imports. The notebook runs in a
    real kernel."""
    run_flow(fp.load_config(project), steps=["01_ingest"])


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[Api, str]]:
    served = Api()
    with serve_in_thread(served.app) as url:
        yield served, url


def test_http_source_with_nested_columns_is_validated_and_loaded(
    api: tuple[Api, str], tmp_path: Path, mlflow_store: Callable[[Path], Path]
) -> None:
    served, url = api
    sources = f"""[sources.items]
kind = "http"
base_url = "{url}"
endpoint = "/link"
pagination = {{ style = "link" }}
primary_key = ["id"]
columns = {{ updated = "local_datetime" }}  # no zone in the data
"""
    expectations = [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 200}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "geo"}},
    ]
    project = mlflow_store(_project(tmp_path / "p", sources, {"items": expectations}))
    _ingest(project)
    items = fp.read_table("items", project=project).sort("id")
    assert items.height == len(served.records) == items["id"].n_unique()
    assert isinstance(items.schema["geo"], pl.Struct)
    assert isinstance(items.schema["tags"], pl.List)
    assert isinstance(items.schema["updated"], pl.Datetime)
    record = served.records[3]  # id 4: nested two levels, a list of one tag
    row = items.filter(pl.col("id") == record["id"]).to_dicts()[0]
    assert row["geo"]["city"]["name"] == record["geo"]["city"]["name"]
    assert row["geo"]["lat"] == pytest.approx(record["geo"]["lat"])
    assert row["tags"] == record["tags"]

    failing = [{"type": "expect_column_values_to_be_null", "kwargs": {"column": "geo"}}]
    gated = mlflow_store(_project(tmp_path / "gated", sources, {"items": failing}))
    with pytest.raises(GateFailed):  # the gate looked at the nested column, nothing loaded
        _ingest(gated)
    assert not (gated / "warehouse" / "items").exists()


def test_incremental_file_source_second_run_loads_only_the_new_file(
    tmp_path: Path, mlflow_store: Callable[[Path], Path]
) -> None:
    sources = """[sources.drops]
path = "landing/*.csv"
incremental = true
write_disposition = "append"
primary_key = ["id"]
"""
    expectations = [{"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}}]
    project = mlflow_store(_project(tmp_path / "p", sources, {"drops": expectations}))
    landing = project / "landing"
    landing.mkdir()
    pl.DataFrame({"id": range(0, 500), "amount": [i * 0.5 for i in range(500)]}).write_csv(
        landing / "2026-01-01.csv"
    )
    _ingest(project)
    pl.DataFrame({"id": range(500, 620), "amount": [1.0] * 120}).write_csv(
        landing / "2026-01-02.csv"
    )
    _ingest(project)
    _ingest(project)  # nothing new: nothing loaded

    drops = fp.read_table("drops", project=project)
    assert drops.height == 620 and drops["id"].n_unique() == 620
    assert drops.schema["id"].is_integer()  # typed from text by the schema step
    loads = fp.open_warehouse(fp.load_config(project)).loads().filter(pl.col("table") == "drops")
    assert loads["rows"].to_list() == [500, 120]  # the second run read only the new file
    summary_files = sorted((project / "runs").glob("*/01_ingest.summary.json"))
    lineages = [json.loads(f.read_text())["lineage"][0] for f in summary_files]
    # the third run is either skipped by the flow's cache (the landing folder is unchanged)
    # or pulls nothing
    assert [lin["rows"] for lin in lineages][:2] == [500, 120]
    assert all(lin["rows"] == 0 for lin in lineages[2:])
    assert lineages[1]["locations"] == [str(landing / "2026-01-02.csv")]
