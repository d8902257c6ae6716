"""The ingest API: state follows each load, a rerun of the same run loads nothing twice, and
sources with nothing new keep the load their state follows."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import featurepipe as fp
from featurepipe.errors import StateError
from featurepipe.ingest import COMMITTED_LOAD

from .conftest import copy_project

SOURCE = """[sources.orders]
path = "drops/*.csv"
incremental = true
write_disposition = "append"

"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The flights project with one incremental file source instead of its own."""
    project = copy_project(tmp_path / "p")
    toml = project / "featurepipe.toml"
    text = toml.read_text()
    start, end = text.index("# ---- sources"), text.index("# ---- features")
    toml.write_text(text[:start] + SOURCE + text[end:])
    (project / "drops").mkdir()
    (project / "drops" / "a.csv").write_text("id,amount\n1,10\n2,20\n")
    return project


def _run(project: Path, load_id: str) -> tuple[fp.Ingest, dict[str, pl.DataFrame]]:
    ingest = fp.Ingest(fp.load_config(project), load_id)
    raw = ingest.extract()
    for name, frame in raw.items():
        ingest.load(name, frame)
    ingest.finish()
    return ingest, raw


def test_state_follows_each_load_and_a_rerun_of_the_same_run_loads_nothing(
    project: Path,
) -> None:
    store = fp.StateStore(project / "warehouse")
    ingest, raw = _run(project, "L1")
    assert raw["orders"].height == 2
    assert store.read("orders")[COMMITTED_LOAD] == "L1"
    (lineage,) = ingest.lineage()
    assert lineage["load_id"] == "L1" and lineage["rows"] == 2 and lineage["version"] == 0
    loads = ingest.destination.loads()
    assert loads["extracted_at"].to_list() == [ingest.pulls["orders"].extraction.extracted_at]

    (project / "drops" / "b.csv").write_text("id,amount\n3,30\n")
    again, raw = _run(project, "L1")  # the same run again: the source is already loaded
    assert raw == {} and again.lineage() == [{"source": "orders", "load_id": "L1"}]

    _, raw = _run(project, "L2")
    assert raw["orders"]["id"].to_list() == ["3"]
    (project / "drops" / "c.csv").write_text("id,amount\n")  # new, but no rows
    _, raw = _run(project, "L3")
    assert raw == {}
    state = store.read("orders")
    assert state[COMMITTED_LOAD] == "L2" and len(state["manifest"]) == 3
    assert fp.read_table("orders", project=project).height == 3


def test_a_state_file_behind_the_destination_is_caught_up(project: Path) -> None:
    store = fp.StateStore(project / "warehouse")
    _run(project, "L1")
    behind = store.file("orders").read_text()
    (project / "drops" / "b.csv").write_text("id,amount\n3,30\n")
    _run(project, "L2")
    store.file("orders").write_text(behind)  # as if the crash fell before this commit
    ingest, raw = _run(project, "L3")
    assert raw == {} and store.read("orders")[COMMITTED_LOAD] == "L2"
    assert fp.read_table("orders", project=project)["id"].sort().to_list() == ["1", "2", "3"]
    with pytest.raises(StateError, match="nothing was extracted for it in this run"):
        ingest.load("orders", pl.DataFrame({"id": ["9"]}))
