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
from featurepipe.flow import is_loss, run_flow

from ..conftest import run_cli
from .conftest import FLOW_PARAMS, TOML, Tiny, write_notebook


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


CLI_FAILURES = [
    # fail mode, exit code, what the error names, the hint's start
    ("error", 1, "ValueError: boom: x has no meaning", "Hint: open the executed notebook"),
    ("gate", 3, "ValidationFailed: validation failed for table(s) numbers", "Hint: fix the data"),
]


@pytest.mark.parametrize(("mode", "code", "error", "hint"), CLI_FAILURES, ids=["cell", "gate"])
def test_the_cli_prints_the_failure_and_exits_with_its_code(
    tiny: Tiny, mode: str, code: int, error: str, hint: str
) -> None:
    """The installed `featurepipe` executable, as a shell or a CI job runs it."""
    result = run_cli("run", "-p", f"fail={mode}", cwd=tiny.root, timeout=120, script=True)
    assert result.returncode == code, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    [executed] = tiny.root.glob("runs/*/a_load.ipynb")
    cell = "step a_load failed in cell 2:"  # parameters, papermill's injected cell, then this
    for word in [f"error: {cell}", error, f"is at {executed}", hint, "--from a_load"]:
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
    result = run_cli("run", "--fail-under", "total=3.5", cwd=tiny.root, timeout=120, script=True)
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


SCORE = (
    FLOW_PARAMS,
    """
import featurepipe as fp

config = fp.load_config(project_dir)
step = fp.open_step(config, "score", mlflow_run_id)
fp.finish_step(step, "score", run_dir, {}, metrics={"test_log_loss": 0.4, "test_roc_auc": 0.7})
""",
)


def test_fail_under_wants_a_loss_at_most_its_threshold(tiny: Tiny) -> None:
    write_notebook(tiny.root / "notebooks" / "score.ipynb", *SCORE)
    toml = TOML.format(flow="").replace('["a_load", "b_stats"]', '["score"]')
    (tiny.root / "featurepipe.toml").write_text(toml)
    bars = ["--fail-under", "test_roc_auc=0.6", "--fail-under"]
    result = run_cli("run", *bars, "test_log_loss=0.3", cwd=tiny.root, timeout=120, script=True)
    assert result.returncode == 6, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "1 metric(s) worse than the threshold: - test_log_loss = 0.4, needs <= 0.3" in message
    # the same run, reused, with a bar it clears: lower is better for a loss
    result = run_cli("run", *bars, "test_log_loss=0.5", cwd=tiny.root, timeout=120, script=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "score up to date" in " ".join(result.stdout.split())


def test_losses_are_known_by_their_name() -> None:
    losses = ["test_log_loss", "brier", "val_rmse", "test_mae", "mse", "train_error"]
    assert [m for m in [*losses, "test_roc_auc", "test_pr_auc", "accuracy"] if is_loss(m)] == losses
