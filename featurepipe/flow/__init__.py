"""Run the project's notebooks with papermill as one tracked, cached flow.

A flow run gets an id, a folder ``runs/<run_id>/`` for its executed notebooks (``.ipynb``
and ``.html``), kernel logs and step summaries, and an MLflow parent run holding the run
record (git commit, command, parameters, config hash, frozen requirements, seeds, data
versions). Each step is a child run that the flow creates and hands to its notebook.

Steps run in an order that respects their upstreams (``dag``). Before a step runs the
flow computes its fingerprint (``fingerprint``); a step whose fingerprint and data
versions match an earlier successful run is *up to date* and reuses that run (``cache``),
unless an upstream step ran in this flow. A failed step marks itself and the parent
FAILED and stops the flow; nothing downstream runs.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, Unpack

from .. import tracking
from ..config import Config
from ..errors import MetricBelowThreshold, StepFailed
from .cache import CACHE_FILE, CacheEntry, StepCache, StepDecision, decide_step
from .dag import FLOW_PARAMETERS, Step, merge_parameters, notebook_parameters, plan_steps
from .execute import stderr_to
from .fingerprint import table_versions
from .pending import ChildRecord, PendingRecord, log_pending, write_pending
from .record import frozen_requirements, run_record

__all__ = [
    "FLOW_PARAMETERS",
    "REUSED_TAG",
    "FlowResult",
    "Selection",
    "Step",
    "StepDecision",
    "StepResult",
    "explain_flow",
    "finish_step",
    "is_loss",
    "log_pending",
    "merge_parameters",
    "new_run_id",
    "notebook_parameters",
    "open_step",
    "plan_steps",
    "read_step_summary",
    "run_flow",
    "stderr_to",
]

log = logging.getLogger(__name__)

REUSED_TAG = "featurepipe.reused_flow_run"
FAIL_UNDER_TAG = "featurepipe.fail_under"
# Metric names ending so are losses or errors: lower is better (as in ``train.LOWER_IS_BETTER``).
LOSSES = ("loss", "brier", "rmse", "mse", "mae", "error")
# Kernels inherit this process's environment: fix str hashing so set order repeats.
REPRODUCIBLE_ENV = {"PYTHONHASHSEED": "0"}


@dataclass
class StepResult:
    """One step of a flow run.

    ``status`` is ``running``, ``finished``, ``failed`` or ``up to date`` (reused from the
    flow run ``reused_run``, whose executed notebook ``notebook`` then points to).
    """

    name: str
    notebook: Path
    mlflow_run_id: str
    seconds: float = 0.0
    status: str = "pending"
    summary: dict[str, Any] = field(default_factory=dict)
    reused_run: str = ""
    reason: str = ""
    started: float = 0.0


@dataclass
class FlowResult:
    """A whole flow run.

    ``mlflow_run_id`` and ``experiment_id`` are empty when every step was up to date: the
    run record then waits in the file ``pending`` until MLflow is next opened.
    """

    run_id: str
    run_dir: Path
    tracking_uri: str
    experiment_id: str
    mlflow_run_id: str
    steps: list[StepResult] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    pending: Path | None = None

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


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """Set variables the kernels inherit (unless the user set them), restoring them after."""
    saved = {k: os.environ.get(k) for k in values}
    effective = {}
    for key, value in values.items():
        os.environ.setdefault(key, value)
        effective[key] = os.environ[key]
    try:
        yield effective
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)


def _reads_from(info: tracking.RunInfo) -> dict[str, str | None]:
    """Table and model versions a notebook reported reading.

    ``log_table_versions`` gives ``table:NAME``; a model loaded by alias
    (``registry.load_registered_model``) gives ``model:NAME/ALIAS`` (MLflow allows no ``@``
    in a parameter name).
    """
    reads: dict[str, str | None] = {}
    for key, value in info.params.items():
        if key.startswith("table_version."):
            reads[f"table:{key.removeprefix('table_version.')}"] = value
        elif key.startswith(tracking.MODEL_READ_PREFIX):
            name, _, alias = key.removeprefix(tracking.MODEL_READ_PREFIX).rpartition("/")
            reads[f"model:{name}/{alias}"] = value
    return reads


def _step_sources(config: Config, step: Step) -> list[str]:
    declared = config.flow.step(step.name).sources
    if declared is not None:
        return [f"source:{s}" for s in declared]
    return [f"source:{s}" for s in config.sources] if not step.upstream else []


class Selection(TypedDict, total=False):
    """Which steps a flow run considers and which it runs anyway (``run_flow`` keywords).

    Keys:
        parameters: ``-p`` parameters; each goes to the notebooks that declare it (they win
            over ``FEATUREPIPE_PARAM_*``, ``[flow.steps.X.parameters]``, ``[flow.parameters]``
            and the notebook's defaults, in that order).
        steps: consider only these steps (default: all).
        start: run this step and its downstream steps, this one even if it is up to date.
        end: stop after this step (run only it and its upstream).
        force: run every selected step, ignoring the cache.
    """

    parameters: Mapping[str, Any] | None
    steps: Sequence[str] | None
    start: str | None
    end: str | None
    force: bool


def _plan(config: Config, selection: Selection) -> list[Step]:
    return plan_steps(
        config,
        parameters=selection.get("parameters"),
        only=selection.get("steps"),
        start=selection.get("start"),
        end=selection.get("end"),
    )


def _decide_step(
    config: Config, step: Step, cache: StepCache, ran: set[str], selection: Selection
) -> StepDecision:
    start, force = selection.get("start"), selection.get("force", False)
    return decide_step(config, step, cache, ran=ran, start=start, force=force)


def _decide(
    config: Config, plan: Sequence[Step], cache: StepCache, selection: Selection
) -> list[StepDecision]:
    """Each step's decision, taking the steps that would run before it as run."""
    decisions: list[StepDecision] = []
    ran: set[str] = set()
    for step in plan:
        decision = _decide_step(config, step, cache, ran, selection)
        if decision.runs:
            ran.add(step.name)
        decisions.append(decision)
    return decisions


def run_flow(
    config: Config,
    *,
    fail_under: Mapping[str, float] | None = None,
    command: str | None = None,
    on_step: Callable[[StepResult], None] | None = None,
    **selection: Unpack[Selection],
) -> FlowResult:
    """Run the flow's steps into ``runs/<run_id>/``, reusing the ones that are up to date.

    When every step is up to date nothing imports MLflow: the run record waits in
    ``runs/<run_id>/mlflow-pending.json`` until MLflow is next opened (``pending``).

    Args:
        config: the project configuration.
        fail_under: metric name to threshold, checked when every step has finished; a
            loss (``is_loss``) must be at most its threshold, any other metric at least.
        command: the command line to record (default: this process's).
        on_step: called when a step starts (``running``) and when it ends.
        **selection: ``parameters``, ``steps``, ``start``, ``end``, ``force``
            (see ``Selection``).

    Returns:
        The flow result with every step's summary and the flow's metrics.

    Raises:
        FlowError: a notebook is missing or a step or parameter is unknown.
        ConfigError: the ``[flow]`` section is inconsistent (e.g. a cycle).
        StepFailed: a step failed (``GateFailed``, ``StepTimedOut``, ``KernelDied``); its
            executed notebook holds the error.
        MetricBelowThreshold: every step finished but a metric missed ``fail_under``.
    """
    plan = _plan(config, selection)
    started_ms = time.time_ns() // 1_000_000
    run_id = new_run_id()
    runs_dir = config.path(config.flow.runs_dir)
    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True)
    cache = StepCache(runs_dir / CACHE_FILE)
    decisions = _decide(config, plan, cache, selection)
    with _environment(REPRODUCIBLE_ENV) as environment:
        tags, record = run_record(config, command, environment)
        params: dict[str, Any] = {"steps": ",".join(s.name for s in plan), **record}
        for step in plan:
            params.update({f"param.{step.name}.{k}": v for k, v in step.effective.items()})
        tags[tracking.FLOW_TAG] = run_id
        tags[tracking.KIND_TAG] = "flow"
        tags["featurepipe.project"] = config.name
        requirements = frozen_requirements()
        (run_dir / "requirements.txt").write_text(requirements, encoding="utf-8")
        if not any(d.runs for d in decisions):
            return _reuse_all(
                config,
                plan,
                decisions,
                PendingRecord(run_id, started_ms, 0, False, tags, params),
                cache,
                fail_under or {},
                on_step,
            )
        experiment_id = tracking.configure(
            config.tracking_uri, config.tracking.experiment, config.path("mlruns")
        )
        log_pending(config, experiment_id)  # runs that reused every step, so `runs` lists them
        parent = tracking.start_flow_run(experiment_id, f"flow {run_id}", params, tags)
        result = FlowResult(run_id, run_dir, config.tracking_uri, experiment_id, parent)
        tracking.log_text(parent, requirements, "requirements.txt")
        log.info("flow %s: %d step(s), MLflow run %s", run_id, len(plan), parent)
        try:
            _run_steps(config, plan, result, cache, selection, on_step=on_step)
            misses = _misses(result.metrics, fail_under or {})
            if misses:
                tracking.log_run(parent, tags={FAIL_UNDER_TAG: "missed"})
                raise _missed(run_id, misses)
        except BaseException:
            tracking.end_run(parent, failed=True)
            raise
        tracking.end_run(parent)
    return result


def _reuse_all(
    config: Config,
    plan: Sequence[Step],
    decisions: Sequence[StepDecision],
    record: PendingRecord,
    cache: StepCache,
    fail_under: Mapping[str, float],
    on_step: Callable[[StepResult], None] | None,
) -> FlowResult:
    """A flow run in which every step is up to date: its record goes to ``runs/``, not MLflow."""
    run_dir = config.path(config.flow.runs_dir) / record.run_id
    result = FlowResult(record.run_id, run_dir, config.tracking_uri, "", "")
    outcomes: dict[str, Any] = {}
    for step, decision in zip(plan, decisions, strict=True):
        assert decision.entry is not None  # noqa: S101 (only called when every step reuses)
        outcome = _reused_step(config, step, decision.entry)
        outcome.reason = decision.reason
        result.steps.append(outcome)
        tags, params = _reuse_record(step, decision.entry, decision.fingerprint)
        record.children.append(ChildRecord(step.name, tags, params, time.time_ns() // 1_000_000))
        outcomes.update(_data_record(step.name, decision.fingerprint, decision.entry))
        outcomes[f"status.{step.name}"] = outcome.status
        result.metrics.update(decision.entry.metrics)
        if on_step:
            on_step(outcome)
    cache.save()  # keeps file hashes computed while probing
    misses = _misses(result.metrics, fail_under)
    record.params.update(outcomes)
    record.metrics = dict(result.metrics)
    record.failed = bool(misses)
    if misses:
        record.tags[FAIL_UNDER_TAG] = "missed"
    record.end_ms = time.time_ns() // 1_000_000
    result.pending = write_pending(run_dir, record)
    if misses:
        raise _missed(record.run_id, misses)
    return result


def explain_flow(config: Config, **selection: Unpack[Selection]) -> list[StepDecision]:
    """What ``run_flow`` with the same arguments would run or reuse, and why; runs nothing.

    Raises:
        FlowError, ConfigError: as ``run_flow`` would before running anything.
    """
    plan = _plan(config, selection)
    cache = StepCache(config.path(config.flow.runs_dir) / CACHE_FILE)
    return _decide(config, plan, cache, selection)


def _run_steps(
    config: Config,
    plan: Sequence[Step],
    result: FlowResult,
    cache: StepCache,
    selection: Selection,
    *,
    on_step: Callable[[StepResult], None] | None,
) -> None:
    ran: set[str] = set()
    record: dict[str, Any] = {}  # logged to the parent run at the end, in one batch
    try:
        for step in plan:
            decision = _decide_step(config, step, cache, ran, selection)
            entry = decision.entry
            if entry is not None:
                outcome = _reused_step(config, step, entry)
                result.steps.append(outcome)
                tags, params = _reuse_record(step, entry, decision.fingerprint)
                outcome.mlflow_run_id = tracking.create_step_run(
                    result.experiment_id, result.mlflow_run_id, step.name, result.run_id, tags
                )
                tracking.log_run(outcome.mlflow_run_id, params=params)
                tracking.end_run(outcome.mlflow_run_id)
            else:
                outcome, entry = _execute(config, step, result, cache, decision, on_step)
                ran.add(step.name)
            outcome.reason = decision.reason
            record.update(_data_record(step.name, decision.fingerprint, entry))
            result.metrics.update(entry.metrics)
            if on_step:
                on_step(outcome)
    finally:
        cache.save()  # keeps file hashes computed while probing
        record.update({f"status.{s.name}": s.status for s in result.steps})
        tracking.log_run(result.mlflow_run_id, params=record, metrics=result.metrics)


def _data_record(step: str, fingerprint: str, entry: CacheEntry) -> dict[str, Any]:
    """A step's fingerprint and the data versions its results stand on (made now or reused)."""
    return {
        f"fingerprint.{step}": fingerprint,
        **{f"data.read.{k}": v for k, v in entry.reads.items()},
        **{f"data.written.{k}": v for k, v in entry.writes.items()},
    }


def _reuse_record(
    step: Step, entry: CacheEntry, fingerprint: str
) -> tuple[dict[str, str], dict[str, Any]]:
    """Tags and parameters of an up-to-date step's child run, which points at the run reused."""
    tags = {
        REUSED_TAG: entry.run_id,
        "featurepipe.reused_mlflow_run": entry.mlflow_run_id,
        "featurepipe.fingerprint": fingerprint,
    }
    reads = {f"data.read.{k}": v for k, v in entry.reads.items()}
    return tags, {**step.parameters, **reads}


def _reused_step(config: Config, step: Step, entry: CacheEntry) -> StepResult:
    """An up-to-date step: the executed notebook and summary of the run it reuses."""
    old_dir = config.path(config.flow.runs_dir) / entry.run_id
    return StepResult(
        step.name,
        old_dir / f"{step.name}.ipynb",
        "",
        status="up to date",
        summary=read_step_summary(old_dir, step.name),
        reused_run=entry.run_id,
    )


def _execute(
    config: Config,
    step: Step,
    result: FlowResult,
    cache: StepCache,
    decision: StepDecision,
    on_step: Callable[[StepResult], None] | None,
) -> tuple[StepResult, CacheEntry]:
    from .execute import execute_notebook

    fingerprint = decision.fingerprint

    child = tracking.create_step_run(
        result.experiment_id,
        result.mlflow_run_id,
        step.name,
        result.run_id,
        tags={"featurepipe.fingerprint": fingerprint},
    )
    outcome = StepResult(step.name, result.run_dir / f"{step.name}.ipynb", child, status="running")
    outcome.started = time.monotonic()
    result.steps.append(outcome)
    if on_step:
        on_step(outcome)
    sources = _step_sources(config, step)
    before_sources = cache.probe(config, dict.fromkeys(sources))
    before_tables = table_versions(config)
    try:
        with stderr_to(result.run_dir / f"{step.name}.kernel.log"):
            execute_notebook(
                step.name,
                result.run_id,
                step.notebook,
                outcome.notebook,
                {
                    "project_dir": str(config.project_dir),
                    "run_dir": str(result.run_dir),
                    "mlflow_run_id": child,
                    "load_id": result.run_id,
                    **step.parameters,
                },
                cwd=config.project_dir,
                timeout=step.timeout,
            )
    except StepFailed:
        outcome.status, outcome.seconds = "failed", time.monotonic() - outcome.started
        _close(child, outcome, failed=True)
        if on_step:
            on_step(outcome)
        raise
    outcome.status, outcome.seconds = "finished", time.monotonic() - outcome.started
    outcome.summary = read_step_summary(result.run_dir, step.name)
    after_tables = table_versions(config)
    writes: dict[str, str | None] = {
        k: v for k, v in after_tables.items() if before_tables.get(k) != v
    }
    logged = tracking.run_info(child)
    reads = {**before_sources, **_reads_from(logged)}
    entry = CacheEntry(
        step=step.name,
        run_id=result.run_id,
        mlflow_run_id=child,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        reads=reads,
        writes=writes,
        parts=dict(decision.parts),
        metrics=dict(logged.metrics),
    )
    tracking.log_run(child, params={f"data.read.{k}": v for k, v in before_sources.items()})
    _close(child, outcome, failed=False)
    cache.store(fingerprint, entry)
    return outcome, entry


def _close(run_id: str, outcome: StepResult, *, failed: bool) -> None:
    """Log the executed notebook (and its HTML) to the step run, then end the run."""
    from .execute import export_html

    if outcome.notebook.is_file():
        tracking.log_artifact(run_id, outcome.notebook, "notebooks")
        try:
            html = export_html(outcome.notebook)
        except (OSError, ValueError) as exc:  # a report that cannot render must not fail a step
            log.warning("cannot render %s as HTML: %s", outcome.notebook, exc)
        else:
            tracking.log_artifact(run_id, html, "notebooks")
    tracking.end_run(run_id, failed=failed)


def is_loss(metric: str) -> bool:
    """Whether lower is better for a metric: its name ends in a loss or an error.

    ``test_log_loss``, ``brier``, ``val_rmse``, ``mae`` are losses; ``test_roc_auc`` is not.
    """
    return metric.lower().endswith(LOSSES)


def _missed(run_id: str, misses: dict[str, tuple[float | None, float]]) -> MetricBelowThreshold:
    """The error of a flow run whose metrics missed their ``--fail-under`` thresholds."""
    return MetricBelowThreshold(run_id, misses, losses=[m for m in misses if is_loss(m)])


def _misses(
    metrics: Mapping[str, float], fail_under: Mapping[str, float]
) -> dict[str, tuple[float | None, float]]:
    """The metrics that miss their threshold: below it, or above it for a loss."""
    misses: dict[str, tuple[float | None, float]] = {}
    for name, threshold in fail_under.items():
        value = metrics.get(name)
        if value is None or (value > threshold if is_loss(name) else value < threshold):
            misses[name] = (value, threshold)
    return misses
