"""Pull sources through the real 01_ingest notebook: incremental runs, state after the load,
and a failing source that exits non-zero with nothing committed."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import featurepipe as fp
from featurepipe.flow import run_flow

from ..conftest import copy_project, run_cli
from .conftest import Database

pytestmark = pytest.mark.e2e

SUITE = {
    "name": "orders",
    "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
    ],
    "meta": {},
}


def _pull_project(root: Path, url: str, table: str) -> Path:
    """The flights project with its sources replaced by one incremental SQL table."""
    project = copy_project(root)
    toml = project / "featurepipe.toml"
    text = toml.read_text()
    start, end = text.index("# ---- sources"), text.index("# ---- features")
    source = f"""[sources.orders]
kind = "sql"
url = "{url}"
table = "{table}"
cursor = "updated_at"
primary_key = ["id"]
write_disposition = "merge"
batch_rows = 500

"""
    toml.write_text(text[:start] + source + text[end:])
    (project / "expectations" / "orders.json").write_text(json.dumps(SUITE))
    return project


def test_ingest_pulls_only_new_rows_and_commits_state_after_the_load(
    postgres: Database, tmp_path: Path, mlflow_store: Callable[[Path], Path]
) -> None:
    table = postgres.table("orders")
    postgres.execute(
        f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, updated_at TIMESTAMPTZ NOT NULL, "
        "amount NUMERIC(10, 2))"
    )
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    insert = f"INSERT INTO {table} VALUES (%s, %s, %s)"
    postgres.execute(insert, [(i, t0 + timedelta(minutes=i % 7), i) for i in range(1, 2001)])
    project = mlflow_store(_pull_project(tmp_path / "p", postgres.url, table))
    state_file = project / "warehouse" / "_state" / "orders.json"

    # the first run in this process (a CLI run costs a Python start and its imports); the
    # next two through the CLI, whose output and exit code they check
    run_flow(fp.load_config(project), steps=["01_ingest"])
    assert fp.read_table("orders", project=project).height == 2_000
    assert fp.StateStore(project / "warehouse").read("orders")["lineage"]["rows"] == 2_000
    # lineage reaches the step summary, its MLflow copy and the loads table
    (summary_file,) = (project / "runs").glob("*/01_ingest.summary.json")
    (artifact,) = (project / "mlruns").rglob("01_ingest.summary.json")
    summary = json.loads(summary_file.read_text())
    assert json.loads(artifact.read_text())["lineage"] == summary["lineage"]
    (lineage,) = summary["lineage"]
    (load,) = fp.open_warehouse(fp.load_config(project)).loads().to_dicts()
    assert lineage["source"] == "orders" and lineage["rows"] == 2_000
    assert lineage["load_id"] == load["load_id"] == summary_file.parent.name
    assert datetime.fromisoformat(lineage["extracted_at"]) == load["extracted_at"]
    assert load["extracted_at"] < load["loaded_at"]

    later = t0 + timedelta(hours=1)
    postgres.execute(insert, [(i, later, i) for i in range(2001, 2051)])
    postgres.execute(f"UPDATE {table} SET amount = -1, updated_at = %s WHERE id <= 10", [(later,)])
    second = run_cli("run", "--step", "01_ingest", "--project", str(project), cwd=project)
    assert second.returncode == 0, second.stderr + second.stdout
    assert re.search(r"│ orders │\s+60 │", second.stdout)  # rows_in: 50 new + 10 changed
    loaded = fp.read_table("orders", project=project)
    assert loaded.height == 2_050 and loaded.filter(loaded["amount"] == -1).height == 10
    committed = state_file.read_text()

    # nothing new: the source extracts no rows, loads nothing and keeps its state
    idle = run_flow(fp.load_config(project), steps=["01_ingest"], force=True)
    assert [s.status for s in idle.steps] == ["finished"]
    assert fp.read_table("orders", project=project).height == 2_050
    assert json.loads(state_file.read_text())["cursor"] == json.loads(committed)["cursor"]
    committed = state_file.read_text()

    postgres.execute(f"ALTER TABLE {table} RENAME TO {table}_gone")
    postgres.tables.append(f"{table}_gone")
    broken = run_cli("run", "--step", "01_ingest", "--project", str(project), cwd=project)
    assert broken.returncode == 1
    assert "source 'orders': cannot read" in broken.stderr
    assert "does not exist" in broken.stderr and "sources.orders.table" in broken.stderr
    assert state_file.read_text() == committed  # nothing committed by the failed run
