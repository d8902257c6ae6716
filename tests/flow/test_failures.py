"""Each way a step fails: exit code, message, saved notebook, MLflow status, nothing after it.

The CLI runs as a user runs it; a_load fails on purpose (see conftest) before b_stats.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from featurepipe.cli import exit_code
from featurepipe.errors import (
    GateFailed,
    KernelDied,
    MetricBelowThreshold,
    StepFailed,
    StepTimedOut,
)
from featurepipe.flow import run_flow

from ..conftest import run_cli
from .conftest import Tiny


def _flow_runs(root: Path) -> tuple[object, list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    [parent] = [r for r in runs if r.data.tags.get("featurepipe.kind") == "flow"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


FAILURES = [
    # fail mode, error class, exit code, words the message must hold
    ("error", StepFailed, 1, ["step a_load failed in cell", "ValueError: boom: x has no meaning"]),
    ("gate", GateFailed, 3, ["ValidationFailed", "numbers.x", "then `featurepipe run --from"]),
    ("sleep", StepTimedOut, 4, ["ran longer than 3 s", "raise `timeout` in [flow]"]),
    ("die", KernelDied, 5, ["DeadKernelError", "the kernel process ended abruptly"]),
]


def _assert_stopped_and_recorded(tiny: Tiny) -> None:
    [executed] = tiny.root.glob("runs/*/a_load.ipynb")
    assert "color:red" in executed.read_text()  # the error banner, first in the notebook
    assert not list(tiny.root.glob("runs/*/b_stats.ipynb"))  # downstream did not run
    assert not (tiny.root / "warehouse").exists()
    parent, children = _flow_runs(tiny.root)
    assert parent.info.status == "FAILED"
    assert [(c.info.run_name, c.info.status) for c in children] == [("a_load", "FAILED")]
    client = MlflowClient(tracking_uri=f"sqlite:///{tiny.root / 'mlflow.db'}")
    logged = sorted(a.path for a in client.list_artifacts(children[0].info.run_id, "notebooks"))
    assert logged == ["notebooks/a_load.html", "notebooks/a_load.ipynb"]


@pytest.mark.parametrize(("mode", "error", "code", "words"), FAILURES, ids=[f[0] for f in FAILURES])
def test_a_failed_step_stops_the_flow_and_says_why(
    tiny: Tiny, mode: str, error: type[StepFailed], code: int, words: list[str]
) -> None:
    tiny.set_flow("[flow.steps.a_load]\ntimeout = 3\n")
    with pytest.raises(StepFailed) as caught:
        run_flow(tiny.config, parameters={"fail": mode})
    assert type(caught.value) is error
    assert exit_code(caught.value) == code
    message = str(caught.value)
    for word in [*words, "step a_load failed", "Hint:", caught.value.notebook]:
        assert word in message, word
    if mode == "die":  # the hint names the real kernel log, beside the executed notebook
        [log] = tiny.root.glob("runs/*/a_load.kernel.log")
        assert f"kernel log {log}," in message
    _assert_stopped_and_recorded(tiny)


def test_the_cli_prints_the_failure_and_exits_with_its_code(tiny: Tiny) -> None:
    result = run_cli("run", "-p", "fail=gate", cwd=tiny.root, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    for word in ["error: step a_load failed in cell", "ValidationFailed", "a_load.ipynb", "Hint:"]:
        assert word in message, word
    assert "✘" in result.stdout and "a_load" in result.stdout  # the live progress table
    _assert_stopped_and_recorded(tiny)


def test_a_metric_below_fail_under_is_exit_6_after_the_flow_ran(tiny: Tiny) -> None:
    with pytest.raises(MetricBelowThreshold, match="missing_metric = not logged") as caught:
        run_flow(tiny.config, fail_under={"total": 3, "missing_metric": 0})
    assert exit_code(caught.value) == 6
    parent, children = _flow_runs(tiny.root)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["featurepipe.fail_under"] == "missed"
    assert {c.info.status for c in children} == {"FINISHED"}
    # the steps themselves succeeded, so the next run reuses them and checks again
    result = run_cli("run", "--fail-under", "total=3.5", cwd=tiny.root, timeout=120)
    assert result.returncode == 6, result.stdout + result.stderr
    assert "total = 3, needs >= 3.5" in " ".join(result.stderr.split())
    assert "up to date" in result.stdout


def test_config_and_usage_errors_are_exit_2_before_anything_runs(tiny: Tiny) -> None:
    tiny.set_flow("timeout = -1")
    result = run_cli("run", cwd=tiny.root)
    assert result.returncode == 2
    assert "flow.timeout" in " ".join(result.stderr.split())
    tiny.set_flow("")
    for args, words in [
        (["-p", "sclae=2"], "unknown parameter(s) ['sclae']"),
        (["--from", "z_zip"], "unknown step(s) ['z_zip']"),
        (["--fail-under", "total"], "METRIC=NUMBER"),
    ]:
        result = run_cli("run", *args, cwd=tiny.root)
        assert result.returncode == 2, args
        assert words in " ".join(result.stderr.split())
    assert not (tiny.root / "runs").exists()
