"""A crash between a load's commit and its state commit, injected into the real 01_ingest
kernel: the rerun loads every row exactly once, even though new rows arrived meanwhile."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import featurepipe as fp
from featurepipe.errors import KernelDied
from featurepipe.flow import run_flow
from featurepipe.ingest import COMMITTED_LOAD

from ..destinations.conftest import PG_URL, drop_pg_schema, new_pg_schema
from .conftest import Database
from .test_ingest_pull import _pull_project

pytestmark = pytest.mark.e2e

# Loaded by every Python process started with this folder on PYTHONPATH, the notebook's
# kernel included: with the variable set, the first state-file commit kills the process
# on the spot, as a power cut right after the load's commit would.
CRASH_HOOK = """
import os
if os.environ.get("FP_TEST_CRASH_BEFORE_STATE_COMMIT"):
    import featurepipe.state

    def _crash(self, source, state):
        os._exit(70)

    featurepipe.state.StateStore.commit = _crash
"""


@pytest.fixture(params=["delta", "postgres", "sqlite"])
def destination_toml(request: pytest.FixtureRequest) -> Iterator[str]:
    """The [destination] table of each kind (PostgreSQL: a schema of the test's own)."""
    if request.param != "postgres":
        yield f'[destination]\nkind = "{request.param}"\n'
        return
    schema = new_pg_schema()
    yield f'[destination]\nkind = "postgres"\nurl = "{PG_URL}"\nschema_name = "{schema}"\n'
    drop_pg_schema(schema)


def _ingest(config: fp.Config, monkeypatch: pytest.MonkeyPatch, *, crash: bool) -> None:
    """Run the 01_ingest step; with ``crash``, its kernel must die at the state commit.

    The flow runs in this process (the CLI around it is tested elsewhere and would cost a
    Python start and its imports per run); the notebook runs in a real kernel, which
    inherits the hook's environment.
    """
    monkeypatch.setenv("FP_TEST_CRASH_BEFORE_STATE_COMMIT", "1" if crash else "")
    if crash:
        with pytest.raises(KernelDied):
            run_flow(config, steps=["01_ingest"])
    else:
        run_flow(config, steps=["01_ingest"])


def test_crash_after_the_load_commit_neither_duplicates_nor_misses(
    postgres: Database,
    destination_toml: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mlflow_store: Callable[[Path], Path],
) -> None:
    table = postgres.table("orders")
    postgres.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, updated_at TIMESTAMPTZ)")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def insert(ids: range, minutes: int) -> None:
        at = t0 + timedelta(minutes=minutes)
        postgres.execute(f"INSERT INTO {table} VALUES (%s, %s)", [(i, at) for i in ids])

    project = mlflow_store(_pull_project(tmp_path / "p", postgres.url, table))
    toml = project / "featurepipe.toml"
    text = toml.read_text().replace('write_disposition = "merge"', 'write_disposition = "append"')
    start, end = text.index("[destination]"), text.index("[tracking]")
    toml.write_text(text[:start] + destination_toml + "\n" + text[end:])
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(CRASH_HOOK)
    monkeypatch.setenv("PYTHONPATH", str(hooks))
    config = fp.load_config(project)
    state_file = fp.StateStore(config.state_dir).file("orders")

    insert(range(1, 1001), 0)
    _ingest(config, monkeypatch, crash=True)  # the first load commits, its state file does not
    assert fp.read_table("orders", project=project).height == 1_000
    assert not state_file.exists()
    insert(range(1001, 1301), 5)  # new rows arrive before the rerun
    _ingest(config, monkeypatch, crash=False)

    insert(range(1301, 1401), 10)
    before = state_file.read_text()
    _ingest(config, monkeypatch, crash=True)  # a later load commits; the state file stays behind
    assert state_file.read_text() == before
    insert(range(1401, 1501), 10)  # late rows at the same cursor value
    _ingest(config, monkeypatch, crash=False)

    loaded = fp.read_table("orders", project=project)
    ids = loaded["id"]
    assert ids.len() == 1_500 and ids.n_unique() == 1_500  # 0 duplicated
    assert set(ids.to_list()) == set(range(1, 1501))  # 0 missed
    loads = fp.open_warehouse(config).loads().filter(pl.col("table") == "orders")
    assert loads["rows"].to_list() == [1_000, 300, 100, 100]
    state = fp.StateStore(config.state_dir).read("orders")
    assert state[COMMITTED_LOAD] == loads["load_id"][-1]
