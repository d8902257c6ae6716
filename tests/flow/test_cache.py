"""The step cache: a step is reused only while its fingerprint and its data are unchanged.

Every fingerprint part is checked with ``explain_flow`` (the decision ``run_flow`` takes,
without running) against a project that really ran; real reruns then show that the
decisions are acted on. Real kernels and a real sqlite MLflow store throughout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from featurepipe import tracking
from featurepipe.destinations import DeltaDestination
from featurepipe.flow import (
    REUSED_TAG,
    FlowResult,
    explain_flow,
    fingerprint,
    log_pending,
    run_flow,
)
from featurepipe.flow.runs import find_run

from .conftest import Tiny

RAN = {"a_load": "finished", "b_stats": "finished"}
FRESH = {"a_load": "up to date", "b_stats": "up to date"}
ONLY_B = {"a_load": "up to date", "b_stats": "finished"}


def _statuses(result: FlowResult) -> dict[str, str]:
    return {s.name: s.status for s in result.steps}


def _would(project: Tiny, **kwargs) -> dict[str, str]:
    return {d.step: "run" if d.runs else "reuse" for d in explain_flow(project.config, **kwargs)}


def _why(project: Tiny, step: str, **kwargs) -> str:
    return next(d.reason for d in explain_flow(project.config, **kwargs) if d.step == step)


BOTH = {"a_load": "run", "b_stats": "run"}
NONE = {"a_load": "reuse", "b_stats": "reuse"}
B = {"a_load": "reuse", "b_stats": "run"}


@pytest.fixture(scope="module")
def ran_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tiny, FlowResult]:
    """A tiny project after one successful flow run (shared: tests restore what they edit)."""
    project = Tiny(tmp_path_factory.mktemp("cache") / "tiny")
    project.set_flow("[flow.steps.a_load]\nconfig = ['sources']\n")
    first = run_flow(project.config)
    assert _statuses(first) == RAN
    return project, first


@pytest.fixture
def project(ran_once) -> Iterator[Tiny]:
    """The shared project; files a test edits are put back afterwards."""
    tiny, _ = ran_once
    files = [tiny.root / "featurepipe.toml", tiny.source, *tiny.root.glob("notebooks/*.ipynb")]
    saved = {p: p.read_bytes() for p in files}
    yield tiny
    for path, data in saved.items():
        path.write_bytes(data)
    for extra in tiny.root.glob("expectations/*"):
        extra.unlink()


def test_nothing_changed_reuses_every_step_and_links_the_run(ran_once, project: Tiny) -> None:
    _, first = ran_once
    assert _would(project) == NONE
    again = run_flow(project.config)
    assert _statuses(again) == FRESH
    assert again.mlflow_run_id == "" and again.pending is not None  # logged later
    assert {s.reused_run for s in again.steps} == {first.run_id}
    assert again.steps[1].notebook == first.run_dir / "b_stats.ipynb"
    assert again.steps[1].summary == {"total": 3.0, "shift": 0}
    assert again.metrics == first.metrics == {"total": 3.0}


HEAVY = ("mlflow", "sklearn", "great_expectations", "papermill", "nbclient", "nbconvert")
NO_OP = """
import sys
from featurepipe.config import load_config
from featurepipe.flow import run_flow
result = run_flow(load_config(sys.argv[1]))
print(result.pending, *sorted({m.split(".")[0] for m in sys.modules}.intersection(sys.argv[2:])))
"""


def test_a_run_that_reuses_every_step_imports_no_mlflow_and_logs_later(project: Tiny) -> None:
    """The no-op path stays cheap: its record waits in runs/ until MLflow is next opened."""
    log_pending(project.config)  # what earlier tests left
    done = subprocess.run(
        [sys.executable, "-c", NO_OP, str(project.root), *HEAVY],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    [pending] = done.stdout.split()  # no heavy module was imported
    record = json.loads(Path(pending).read_text())
    assert record["params"]["status.b_stats"] == "up to date"
    assert record["params"]["data.read.table:numbers"] == "0"
    [logged] = log_pending(project.config)  # what `featurepipe runs` and `ui` do first
    assert not Path(pending).exists()
    assert logged == Path(pending).parent.name == record["run_id"]
    run = find_run(project.config, logged)
    assert run.status == "FINISHED" and run.start_ms == record["start_ms"]
    assert run.metrics == {"total": 3.0}
    assert run.params["status.a_load"] == "up to date"
    children = tracking.child_runs(run.run_id)
    assert [c.name for c in children] == ["a_load", "b_stats"]
    assert {c.tags[REUSED_TAG] for c in children} == {record["children"][0]["tags"][REUSED_TAG]}
    assert log_pending(project.config) == []


LOG_PENDING = """
import sys, time
from pathlib import Path
from featurepipe import tracking  # noqa: F401 (MLflow imported before the start signal)
from featurepipe.config import load_config
from featurepipe.flow import log_pending
config = load_config(sys.argv[1])
go = Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
print(*log_pending(config))
"""


def test_two_processes_logging_pending_records_log_each_once(project: Tiny, tmp_path) -> None:
    """`featurepipe runs` and a flow run (or two) may log the same records at the same time."""
    log_pending(project.config)  # what earlier tests left
    ids = {run_flow(project.config).run_id for _ in range(4)}  # 4 no-op runs: 4 records
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOG_PENDING, str(project.root), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    assert [p.stdout.readline().strip() for p in procs if p.stdout] == ["ready", "ready"]
    go.touch()
    outputs = [p.communicate(timeout=180)[0].split() for p in procs]  # after "ready"
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(outputs[0] + outputs[1]) == sorted(ids)  # each record logged by one process
    experiment = tracking.configure(
        project.config.tracking_uri, project.config.tracking.experiment, None
    )
    for run_id in ids:
        assert len(tracking.flow_runs(experiment, limit=5, flow_run=run_id)) == 1
    assert not list(project.root.glob("runs/*/*pending*"))


def test_a_claim_left_by_a_killed_process_is_taken_over(project: Tiny) -> None:
    log_pending(project.config)  # what earlier tests left
    pending = run_flow(project.config).pending
    assert pending is not None
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    alive = pending.with_name(f".{pending.name}.claimed-{os.getppid()}")
    pending.rename(alive)  # a live process is logging it: leave it
    assert log_pending(project.config) == [] and alive.exists()
    dead = alive.with_name(f".{pending.name}.claimed-{gone.stdout.strip()}")
    alive.rename(dead)  # its process was killed while logging: log it
    assert log_pending(project.config) == [pending.parent.name]
    assert not dead.exists() and not pending.exists()


def test_a_parameter_reruns_its_step_and_downstream(project: Tiny) -> None:
    assert _would(project, parameters={"shift": 1}) == B
    assert _why(project, "b_stats", parameters={"shift": 1}).startswith("parameters changed")
    assert _would(project, parameters={"scale": 2}) == BOTH
    assert _why(project, "b_stats", parameters={"scale": 2}) == "upstream a_load ran"
    assert _would(project, parameters={"shift": 0}) == NONE  # the default, given explicitly


def test_an_edited_notebook_reruns_it_but_outputs_do_not(project: Tiny) -> None:
    path = project.root / "notebooks" / "b_stats.ipynb"
    nb = json.loads(path.read_text())
    nb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "3.0\n"}]
    nb["cells"][1]["execution_count"] = 7
    path.write_text(json.dumps(nb))
    assert _would(project) == NONE
    nb["cells"][1]["source"] += "\nprint('one more line')"
    path.write_text(json.dumps(nb))
    assert _would(project) == B
    assert _why(project, "b_stats").startswith("notebook changed")


def test_the_config_sections_a_step_reads_are_part_of_its_key(project: Tiny) -> None:
    toml = project.root / "featurepipe.toml"
    text = toml.read_text()
    predict = "[predict]\nstart = 2020-01-01T00:00:00+00:00"
    toml.write_text(text.replace(predict, "[predict]\nstart = 2020-02-01T00:00:00+00:00"))
    assert _would(project) == B  # a_load reads only [sources]; b_stats reads everything
    assert _why(project, "b_stats").startswith("config changed")
    toml.write_text(
        text.replace('path = "data/numbers.csv"', 'path = "data/numbers.csv"\nprimary_key = ["t"]')
    )
    assert _would(project) == BOTH


def test_project_files_a_step_reads_are_part_of_its_key(project: Tiny) -> None:
    (project.root / "expectations").mkdir(exist_ok=True)
    suite = project.root / "expectations" / "numbers.json"
    suite.write_text("{}")
    assert _would(project) == NONE  # not declared: not read
    project.set_flow("[flow.steps.a_load]\nconfig = ['sources']\nfiles = ['expectations/*.json']\n")
    assert _would(project) == BOTH
    assert _why(project, "a_load").startswith("files changed")


def test_other_library_versions_rerun_every_step(
    project: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installing another polars cannot happen in a test: the version lookup is replaced."""
    real = fingerprint.library_versions()
    monkeypatch.setattr(
        fingerprint, "library_versions", lambda: {**real, "polars": real["polars"] + ".post1"}
    )
    assert _would(project) == BOTH
    assert _why(project, "a_load").startswith("libraries changed")


def test_featurepipe_code_reruns_every_step(project: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """Editing featurepipe's code cannot happen in a test: its digest lookup is replaced."""
    real = fingerprint.library_versions()
    assert _would(project) == NONE  # the same release and code: a hit
    edited = {**real, "featurepipe": real["featurepipe"].split("+")[0] + "+0123456789abcdef"}
    monkeypatch.setattr(fingerprint, "library_versions", lambda: edited)
    assert _would(project) == BOTH
    assert _why(project, "a_load").startswith("libraries changed")


def test_source_content_not_its_mtime_decides(project: Tiny) -> None:
    project.source.write_text(project.source.read_text())  # new mtime, same bytes
    assert _would(project) == NONE
    project.source.write_text(project.source.read_text().replace(",2\n", ",5\n"))
    assert _would(project) == BOTH
    assert _why(project, "a_load").startswith("input source:numbers changed (sha256:")


def test_force_from_and_to(project: Tiny) -> None:
    assert _would(project, force=True) == BOTH
    assert _would(project, start="b_stats") == {"b_stats": "run"}
    assert _would(project, end="a_load") == {"a_load": "reuse"}
    assert _statuses(run_flow(project.config, start="b_stats")) == {"b_stats": "finished"}


def test_reruns_act_on_the_decisions_and_track_the_data(tiny: Tiny) -> None:
    assert _statuses(run_flow(tiny.config)) == RAN
    shifted = run_flow(tiny.config, parameters={"shift": 1})
    assert _statuses(shifted) == ONLY_B
    assert shifted.metrics == {"total": 4.0}
    # back to the first parameters: a_load's first entry matches its key, but the table it
    # wrote has been rewritten since, so it cannot claim that table is its output
    assert _would(tiny, parameters={"scale": 2}) == BOTH
    assert _statuses(run_flow(tiny.config, parameters={"scale": 2})) == RAN
    assert _why(tiny, "a_load").startswith("output table:numbers changed (0 -> 1)")
    # a new source file reruns ingest and everything after it
    tiny.source.write_text("t,x\n2019-01-01T00:00:00Z,1\n2019-01-02T00:00:00Z,5\n")
    result = run_flow(tiny.config, parameters={"scale": 2})
    assert _statuses(result) == RAN
    assert result.metrics == {"total": 12.0}
    # a table rewritten outside the flow reruns the step that reads it
    warehouse = DeltaDestination(Path(tiny.root / "warehouse"))
    warehouse.write("numbers", pl.DataFrame({"t": ["x"], "x": [100]}), load_id="by-hand")
    assert _why(tiny, "b_stats", parameters={"scale": 2}, steps=["b_stats"]) == (
        "input table:numbers changed (2 -> 3)"
    )
    result = run_flow(tiny.config, parameters={"scale": 2}, steps=["b_stats"])
    assert _statuses(result) == {"b_stats": "finished"}
    assert result.metrics == {"total": 100.0}
