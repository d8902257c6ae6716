"""MLflow tracking: flow and step runs, parameters, metrics, dataset versions.

With ``registry.py`` (models) the only modules that import mlflow, and this one only
when a function is called: importing MLflow takes over a second, and a flow run whose
steps are all up to date must not pay it. A flow run is a parent run; each notebook is
a child run that the flow creates and the notebook resumes by id, so the flow alone
decides whether a step FINISHED or FAILED.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import TrackingError

if TYPE_CHECKING:
    from mlflow.data.dataset_source import DatasetSource
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

__all__ = [
    "RunInfo",
    "StepRun",
    "child_runs",
    "configure",
    "create_step_run",
    "dataset_source",
    "find_experiment",
    "flow_runs",
    "end_run",
    "end_step",
    "log_artifact",
    "log_dict",
    "log_figure",
    "log_metrics",
    "log_model_read",
    "alias_version",
    "log_params",
    "log_run",
    "log_table_versions",
    "log_text",
    "run_info",
    "start_flow_run",
    "start_step",
]

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
STEP_TAG = "featurepipe.step"
FLOW_TAG = "featurepipe.flow_run"
KIND_TAG = "featurepipe.kind"  # "flow" on the parent run of a flow
# Parameter ``model_read.NAME/ALIAS = VERSION``: the run used the model version behind an alias.
MODEL_READ_PREFIX = "model_read."


def _client() -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def _mlflow_error() -> type[MlflowException]:
    """MLflow's exception class, for ``except`` clauses (imported with MLflow, on first use)."""
    from mlflow.exceptions import MlflowException

    return MlflowException


def configure(tracking_uri: str, experiment: str, artifact_root: str | Path | None = None) -> str:
    """Point MLflow at a store and an experiment (created if missing).

    Args:
        tracking_uri: e.g. ``sqlite:////abs/path/mlflow.db``.
        experiment: experiment name.
        artifact_root: where a new experiment keeps its artifacts (default: MLflow's).

    Returns:
        The experiment id.

    Raises:
        TrackingError: the store cannot be reached or created.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    try:
        client = _client()
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            mlflow.set_experiment(experiment_id=found.experiment_id)
            return str(found.experiment_id)
        location = Path(artifact_root).resolve().as_uri() if artifact_root else None
        experiment_id = client.create_experiment(experiment, artifact_location=location)
        mlflow.set_experiment(experiment_id=experiment_id)
        return str(experiment_id)
    except _mlflow_error() as exc:
        raise TrackingError(f"MLflow at {tracking_uri}: {exc.message}") from exc


def start_flow_run(
    experiment_id: str,
    name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    *,
    start_ms: int | None = None,
) -> str:
    """Create the parent run of a flow (started at ``start_ms``, default now); returns its id."""
    client = _client()
    run = client.create_run(experiment_id, start_time=start_ms, run_name=name, tags={**tags})
    _log_batch(client, run.info.run_id, params=params)
    return str(run.info.run_id)


def create_step_run(
    experiment_id: str,
    parent_run_id: str,
    step: str,
    flow_run: str,
    tags: Mapping[str, str] | None = None,
    *,
    start_ms: int | None = None,
) -> str:
    """Create a child run for one notebook (started at ``start_ms``); returns its id."""
    run = _client().create_run(
        experiment_id,
        start_time=start_ms,
        run_name=step,
        tags={PARENT_TAG: parent_run_id, STEP_TAG: step, FLOW_TAG: flow_run, **(tags or {})},
    )
    return str(run.info.run_id)


def log_run(
    run_id: str,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Log parameters, metrics and tags of a run by id, in one batch."""
    client = _client()
    if params or metrics:
        _log_batch(client, run_id, params=params, metrics=metrics)
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, value)


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    """Attach a text document to a run by id."""
    _client().log_text(run_id, text, artifact_file)


@dataclass(frozen=True)
class RunInfo:
    """A run as featurepipe shows it: identity, status, times, parameters, metrics, tags."""

    run_id: str
    name: str
    status: str
    start_ms: int
    end_ms: int | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def flow_run(self) -> str:
        """The flow run id (the folder under ``runs/``), or empty."""
        return self.tags.get(FLOW_TAG, "")

    @property
    def seconds(self) -> float | None:
        """Wall time, when the run has ended."""
        return None if self.end_ms is None else (self.end_ms - self.start_ms) / 1000


def _info(run: Any) -> RunInfo:
    return RunInfo(
        run_id=run.info.run_id,
        name=run.info.run_name or "",
        status=run.info.status,
        start_ms=run.info.start_time,
        end_ms=run.info.end_time,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
    )


def run_info(run_id: str) -> RunInfo:
    """One run by id.

    Raises:
        TrackingError: no such run.
    """
    try:
        return _info(_client().get_run(run_id))
    except _mlflow_error() as exc:
        raise TrackingError(f"MLflow run {run_id}: {exc.message}") from exc


def find_experiment(tracking_uri: str, experiment: str) -> str | None:
    """The id of an experiment, or None when it does not exist (nothing is created)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    try:
        found = _client().get_experiment_by_name(experiment)
    except _mlflow_error() as exc:
        raise TrackingError(f"MLflow at {tracking_uri}: {exc.message}") from exc
    return None if found is None else str(found.experiment_id)


def flow_runs(experiment_id: str, *, limit: int = 20, flow_run: str = "") -> list[RunInfo]:
    """Parent runs of flows, newest first (or the one whose flow run id is ``flow_run``)."""
    query = f"tags.`{KIND_TAG}` = 'flow'"
    if flow_run:
        query += f" and tags.`{FLOW_TAG}` = '{flow_run}'"
    runs = _client().search_runs(
        [experiment_id],
        filter_string=query,
        order_by=["attributes.start_time DESC"],
        max_results=limit,
    )
    return [_info(r) for r in runs]


def end_run(run_id: str, *, failed: bool = False, end_ms: int | None = None) -> None:
    """Mark a run FINISHED, or FAILED (at ``end_ms``, epoch milliseconds; default now)."""
    from mlflow.entities import RunStatus

    status = RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
    _client().set_terminated(run_id, status=status, end_time=end_ms)


def child_runs(parent_run_id: str) -> list[RunInfo]:
    """The child runs of a parent run, oldest first."""
    client = _client()
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return [_info(r) for r in runs]


def log_artifact(run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    """Attach a local file to a run."""
    _client().log_artifact(run_id, str(path), artifact_path)


def _log_batch(
    client: MlflowClient,
    run_id: str,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> None:
    import mlflow
    from mlflow.entities import Metric, Param

    now = mlflow.utils.time.get_current_time_millis()
    client.log_batch(
        run_id,
        params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
        metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
    )


@dataclass(frozen=True)
class StepRun:
    """The MLflow run a notebook logs into.

    Attributes:
        run_id: the run id.
        owned: True when the notebook started the run itself (run standalone, not by a flow),
            so ``end_step`` ends it; a flow ends its own step runs.
    """

    run_id: str
    owned: bool


def start_step(
    step: str,
    *,
    tracking_uri: str,
    experiment: str,
    run_id: str = "",
    artifact_root: str | Path | None = None,
) -> StepRun:
    """Resume the step run a flow created, or start a new run when the notebook runs alone.

    Raises:
        TrackingError: the store cannot be reached or the run id is unknown.
    """
    import mlflow

    configure(tracking_uri, experiment, artifact_root)
    try:
        if run_id:
            active = mlflow.start_run(run_id=run_id)
            return StepRun(run_id=active.info.run_id, owned=False)
        active = mlflow.start_run(run_name=step, tags={STEP_TAG: step})
        return StepRun(run_id=active.info.run_id, owned=True)
    except _mlflow_error() as exc:
        raise TrackingError(f"cannot start run for step {step}: {exc.message}") from exc


def end_step(step: StepRun) -> None:
    """Detach from the step run; end it FINISHED if the notebook started it."""
    import mlflow

    if step.owned:
        mlflow.end_run()


def log_params(params: Mapping[str, Any]) -> None:
    """Log parameters of the active run in one batch."""
    import mlflow

    run = mlflow.active_run()
    if run is not None and params:
        _log_batch(_client(), run.info.run_id, params=params)


def log_metrics(metrics: Mapping[str, float]) -> None:
    """Log metrics of the active run in one batch."""
    import mlflow

    run = mlflow.active_run()
    if run is not None and metrics:
        _log_batch(_client(), run.info.run_id, metrics=metrics)


def log_model_read(name: str, alias: str, version: int) -> None:
    """Record that the active run used ``models:/NAME@ALIAS`` at ``version``.

    The flow's cache checks it: moving the alias (``featurepipe promote``) reruns the step.
    """
    log_params({f"{MODEL_READ_PREFIX}{name}/{alias}": version})


def alias_version(tracking_uri: str, name: str, alias: str) -> str | None:
    """The version ``models:/NAME@ALIAS`` points at, or None when there is no such alias."""
    from mlflow.tracking import MlflowClient

    try:
        found = MlflowClient(tracking_uri=tracking_uri).get_model_version_by_alias(name, alias)
    except _mlflow_error():
        return None
    return str(found.version)


def log_dict(data: Mapping[str, Any], artifact_file: str) -> None:
    """Attach a JSON document to the active run."""
    import mlflow

    mlflow.log_dict(dict(data), artifact_file)


def log_figure(figure: Any, artifact_file: str) -> None:
    """Attach a matplotlib figure to the active run as an image."""
    import mlflow

    mlflow.log_figure(figure, artifact_file)


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@cache
def _location_source() -> Callable[[str], DatasetSource]:
    """The dataset source class of a table MLflow has no type for (defined on first use)."""
    from mlflow.data.dataset_source import DatasetSource

    class LocationSource(DatasetSource):
        """A table MLflow has no dataset source type for (a PostgreSQL table): its location."""

        def __init__(self, uri: str) -> None:
            self.uri = uri

        @staticmethod
        def _get_source_type() -> str:
            return "featurepipe_table"

        def load(self, **kwargs: Any) -> str:
            return self.uri

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> LocationSource:
            return cls(str(raw_source))

        def to_dict(self) -> dict[str, Any]:
            return {"uri": self.uri}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> LocationSource:
            return cls(str(source_dict["uri"]))

    return LocationSource


def dataset_source(location: str | Path) -> DatasetSource:
    """The MLflow dataset source of a table location.

    A local path becomes a ``file://`` URI; a location that has a scheme already
    (``s3://…``, ``postgresql://…#schema.table``) is kept as it is.
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    text = str(location)
    uri = text if _SCHEME.match(text) else Path(text).resolve().as_uri()
    with warnings.catch_warnings():
        # MLflow 3.17 registers its file:// source twice and warns that it picked one
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
        try:
            return resolve_dataset_source(uri)
        except _mlflow_error():  # no source type for the scheme
            return _location_source()(uri)


def log_table_versions(tables: Mapping[str, tuple[str, int]], context: str) -> None:
    """Log the table versions a step read as MLflow dataset inputs.

    Args:
        tables: table name to (location, version).
        context: e.g. ``features`` or ``training``.
    """
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset

    for name, (location, version) in tables.items():
        source = dataset_source(location)
        dataset = MetaDataset(source=source, name=f"{name}@v{version}")  # type: ignore[abstract]
        mlflow.log_input(dataset, context=context)
    log_params({f"table_version.{name}": version for name, (_, version) in tables.items()})
