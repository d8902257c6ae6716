"""Run the project's notebooks with papermill as one tracked flow.

A flow run gets an id, a folder ``runs/<run_id>/`` for its executed notebooks and
step summaries, and an MLflow parent run; each notebook is a child run that the
flow creates, hands to the notebook as a parameter, and ends FINISHED or FAILED.
On a failed cell papermill has already written the notebook with the error in
it; the flow then raises ``StepFailed`` with the step, cell and error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import tracking
from .config import Config
from .errors import FlowError, StepFailed

__all__ = [
    "FlowResult",
    "StepResult",
    "finish_step",
    "new_run_id",
    "notebook_parameters",
    "open_step",
    "read_step_summary",
    "run_flow",
    "stderr_to",
]

log = logging.getLogger(__name__)

# Parameters every notebook receives from the flow.
FLOW_PARAMETERS = ("project_dir", "run_dir", "mlflow_run_id", "load_id")


@dataclass
class StepResult:
    """One executed notebook."""

    name: str
    notebook: Path
    mlflow_run_id: str
    seconds: float = 0.0
    status: str = "pending"
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class FlowResult:
    """A whole flow run."""

    run_id: str
    run_dir: Path
    tracking_uri: str
    experiment_id: str
    mlflow_run_id: str
    steps: list[StepResult] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Wall time of all steps."""
        return sum(s.seconds for s in self.steps)


def new_run_id() -> str:
    """A sortable, unique flow run id, e.g. ``20261124T101500Z-3f9a``."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def _summary_path(run_dir: str | Path, step: str) -> Path:
    return Path(run_dir) / f"{step}.summary.json"


def open_step(config: Config, step: str, mlflow_run_id: str = "") -> tracking.StepRun:
    """What a notebook calls first: attach to its MLflow step run (or start one when alone)."""
    return tracking.start_step(
        step,
        tracking_uri=config.tracking_uri,
        experiment=config.tracking.experiment,
        run_id=mlflow_run_id,
        artifact_root=config.path("mlruns"),
    )


def finish_step(
    step_run: tracking.StepRun,
    step: str,
    run_dir: str | Path,
    summary: Mapping[str, Any],
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """What a notebook calls last: log metrics and the step summary, then detach.

    Returns:
        The summary file ``<run_dir>/<step>.summary.json``.
    """
    tracking.log_metrics(metrics or {})
    tracking.log_dict(summary, f"{step}.summary.json")
    path = _summary_path(run_dir or "runs/manual", step)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    tracking.end_step(step_run)
    return path


def read_step_summary(run_dir: str | Path, step: str) -> dict[str, Any]:
    """The summary a step wrote, or an empty dict."""
    path = _summary_path(run_dir, step)
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """The parameters a notebook declares in its cell tagged ``parameters``."""
    import papermill  # slow import: only when notebooks run

    return dict(papermill.inspect_notebook(str(path)))


def _route(
    notebooks: Mapping[str, Path], parameters: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    declared = {step: notebook_parameters(nb) for step, nb in notebooks.items()}
    for step, names in declared.items():
        missing = [p for p in FLOW_PARAMETERS if p not in names]
        if missing:
            raise FlowError(
                f"{notebooks[step]}: the parameters cell must declare {missing}; "
                "the flow passes them to every notebook."
            )
    unknown = [k for k in parameters if not any(k in names for names in declared.values())]
    if unknown:
        known = sorted({n for names in declared.values() for n in names} - set(FLOW_PARAMETERS))
        raise FlowError(f"unknown parameter(s) {unknown}; the notebooks declare {known}")
    return {
        step: {k: v for k, v in parameters.items() if k in names}
        for step, names in declared.items()
    }


def run_flow(
    config: Config,
    *,
    parameters: Mapping[str, Any] | None = None,
    steps: Sequence[str] | None = None,
    on_step: Callable[[StepResult], None] | None = None,
) -> FlowResult:
    """Execute the project's notebooks in order into ``runs/<run_id>/``.

    Args:
        config: the project configuration.
        parameters: notebook parameters; each goes to the notebooks that declare it.
        steps: run only these notebooks (default: all, in ``flow.notebooks`` order).
        on_step: called when a step starts (status ``running``) and when it ends.

    Returns:
        The flow result with every step's summary.

    Raises:
        FlowError: a notebook is missing or a parameter is unknown.
        StepFailed: a notebook raised; its executed copy holds the error.
    """
    import papermill  # slow import: only when notebooks run
    from papermill.exceptions import PapermillExecutionError

    names = list(steps or config.flow.notebooks)
    unknown = [s for s in names if s not in config.flow.notebooks]
    if unknown:
        raise FlowError(f"unknown step(s) {unknown}; the flow has {config.flow.notebooks}")
    notebooks = {s: config.path(config.flow.notebooks_dir) / f"{s}.ipynb" for s in names}
    for step, path in notebooks.items():
        if not path.is_file():
            raise FlowError(f"step {step}: notebook {path} not found")
    routed = _route(notebooks, parameters or {})

    run_id = new_run_id()
    run_dir = config.path(config.flow.runs_dir) / run_id
    run_dir.mkdir(parents=True)
    experiment_id = tracking.configure(
        config.tracking_uri, config.tracking.experiment, config.path("mlruns")
    )
    parent = tracking.start_flow_run(
        experiment_id,
        f"flow {run_id}",
        params={
            "steps": ",".join(names),
            **{f"param.{k}": v for k, v in (parameters or {}).items()},
        },
        tags={tracking.FLOW_TAG: run_id, "featurepipe.project": config.name},
    )
    result = FlowResult(run_id, run_dir, config.tracking_uri, experiment_id, parent)
    log.info("flow %s: %d step(s), MLflow run %s", run_id, len(names), parent)
    try:
        for step in names:
            child = tracking.create_step_run(experiment_id, parent, step, run_id)
            outcome = StepResult(step, run_dir / f"{step}.ipynb", child, status="running")
            result.steps.append(outcome)
            if on_step:
                on_step(outcome)
            started = time.perf_counter()
            try:
                with stderr_to(run_dir / f"{step}.kernel.log"):
                    papermill.execute_notebook(
                        str(notebooks[step]),
                        str(outcome.notebook),
                        parameters={
                            "project_dir": str(config.project_dir),
                            "run_dir": str(run_dir),
                            "mlflow_run_id": child,
                            "load_id": run_id,
                            **routed[step],
                        },
                        cwd=str(config.project_dir),
                        progress_bar=False,
                        log_output=False,
                    )
            except PapermillExecutionError as exc:
                outcome.status, outcome.seconds = "failed", time.perf_counter() - started
                _close(child, outcome, failed=True)
                if on_step:
                    on_step(outcome)
                raise StepFailed(
                    step,
                    run_id,
                    str(outcome.notebook),
                    cell_index=exc.cell_index,
                    error_name=exc.ename,
                    error_value=exc.evalue,
                ) from exc
            outcome.status, outcome.seconds = "finished", time.perf_counter() - started
            outcome.summary = read_step_summary(run_dir, step)
            _close(child, outcome, failed=False)
            if on_step:
                on_step(outcome)
    except BaseException:
        tracking.end_run(parent, failed=True)
        raise
    tracking.end_run(parent)
    return result


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr, and so its kernels' logs and warnings, to a file."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as log_file:
        os.dup2(log_file.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _close(run_id: str, outcome: StepResult, *, failed: bool) -> None:
    if outcome.notebook.is_file():
        tracking.log_artifact(run_id, outcome.notebook, "notebooks")
    tracking.end_run(run_id, failed=failed)
