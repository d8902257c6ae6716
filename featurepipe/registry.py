"""MLflow for models: grid trials as nested runs, feature-set inputs, the model registry,
promotion from ``candidate`` to ``champion``, and loading a registered model.

With ``tracking.py`` the only modules that import mlflow. Registered models are loaded
from their skops file with featurepipe's own trusted-type list, never with the list
stored inside the model, and never from pickle.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlflow
from mlflow.data.meta_dataset import MetaDataset
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .errors import ModelError, TrackingError
from .tracking import PARENT_TAG, dataset_source, log_model_read, log_run
from .train import LOWER_IS_BETTER, TRUSTED_TYPES, is_better, load_model

__all__ = [
    "GATE_PREFIX",
    "Promotion",
    "RegisteredModel",
    "load_registered_model",
    "log_feature_set",
    "log_gates",
    "log_registered_model",
    "log_trial",
    "promote",
]

GATE_PREFIX = "gate."
MODEL_ARTIFACT = "model"
# What the logged model needs to be served; giving it skips MLflow's slow inference of it.
_PIP_REQUIREMENTS = ["scikit-learn", "skops", "pandas", "numpy"]


def _active_run_id() -> str:
    run = mlflow.active_run()
    if run is None:
        raise TrackingError("no active MLflow run; open the step first (fp.open_step)")
    return str(run.info.run_id)


def log_trial(name: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> str:
    """Log one grid combination as a run nested under the active run; returns its id."""
    parent = _active_run_id()
    client = MlflowClient()
    run = client.create_run(
        client.get_run(parent).info.experiment_id,
        run_name=name,
        tags={PARENT_TAG: parent, "featurepipe.trial": "true"},
    )
    log_run(run.info.run_id, params=params, metrics=metrics)
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def log_feature_set(
    name: str, location: str | Path, version: int, digest: str, context: str, rows: int
) -> None:
    """Log a feature table as a dataset input of the active run: name, digest, version."""
    source = dataset_source(location)
    dataset = MetaDataset(source=source, name=f"{name}@v{version}", digest=digest)  # type: ignore[abstract]
    mlflow.log_input(dataset, context=context, tags={"rows": str(rows), "version": str(version)})
    mlflow.log_params({f"table_version.{name}": version, f"digest.{name}": digest})


def log_gates(gates: Mapping[str, bool]) -> bool:
    """Log each gate as a metric ``gate.<name>`` (1 passed, 0 failed); True if all passed."""
    log_run(_active_run_id(), metrics={f"{GATE_PREFIX}{k}": float(v) for k, v in gates.items()})
    return all(gates.values())


def log_registered_model(
    pipeline: Any,
    *,
    registered_name: str,
    alias: str,
    input_example: Any,
    metadata: Mapping[str, Any] | None = None,
) -> int:
    """Log a pipeline (skops format) with its signature and input example, register it
    and point ``alias`` at the new version.

    Returns:
        The registered model version.

    Raises:
        TrackingError: MLflow refused to log or register the model.
    """
    from mlflow.models import infer_signature

    output = (
        pipeline.predict_proba(input_example)[:, 1]
        if hasattr(pipeline, "predict_proba")
        else pipeline.predict(input_example)
    )
    try:
        info = mlflow.sklearn.log_model(
            pipeline,
            name=MODEL_ARTIFACT,
            serialization_format="skops",
            skops_trusted_types=TRUSTED_TYPES,
            pip_requirements=_PIP_REQUIREMENTS,
            signature=infer_signature(input_example, output),
            input_example=input_example,
            registered_model_name=registered_name,
            metadata=dict(metadata or {}),
        )
        version = int(info.registered_model_version)
        MlflowClient().set_registered_model_alias(registered_name, alias, str(version))
    except MlflowException as exc:
        raise TrackingError(
            f"cannot log or register model {registered_name!r}: {exc.message}"
        ) from exc
    return version


@dataclass(frozen=True)
class RegisteredModel:
    """A model version loaded from the registry."""

    name: str
    version: int
    alias: str | None
    run_id: str
    pipeline: Any


def _version(client: MlflowClient, name: str, alias: str | None, version: int | None) -> Any:
    try:
        if version is not None:
            return client.get_model_version(name, str(version))
        return client.get_model_version_by_alias(name, alias or "champion")
    except MlflowException as exc:
        which = f"version {version}" if version is not None else f"alias {alias!r}"
        raise ModelError(
            f"registered model {name!r} has no {which}: {exc.message.splitlines()[0]}. "
            "Train one (notebooks/03_train) and promote it (featurepipe promote)."
        ) from exc


def load_registered_model(
    name: str, *, alias: str | None = "champion", version: int | None = None
) -> RegisteredModel:
    """Download a registered model version (by alias, or an exact version) and load it.

    Raises:
        ModelError: no such model, alias or version; or its file holds untrusted types.
    """
    client = MlflowClient()
    found = _version(client, name, alias, version)
    with tempfile.TemporaryDirectory(prefix="featurepipe-model-") as folder:
        try:
            local = mlflow.artifacts.download_artifacts(
                f"models:/{name}/{found.version}", dst_path=folder
            )
        except MlflowException as exc:
            raise ModelError(
                f"cannot download model {name} v{found.version}: {exc.message}"
            ) from exc
        files = sorted(Path(local).rglob("*.skops"))
        if not files:
            raise ModelError(f"registered model {name} v{found.version} holds no .skops file")
        pipeline = load_model(files[0])  # read whole: the download can go
    used = None if version is not None else (alias or "champion")
    if used is not None and mlflow.active_run() is not None:
        log_model_read(name, used, int(found.version))  # the flow reruns the step if it moves
    return RegisteredModel(name, int(found.version), used, str(found.run_id), pipeline)


@dataclass(frozen=True)
class Promotion:
    """What ``promote`` decided and why."""

    promoted: bool
    reason: str
    metric: str
    candidate_version: int | None = None
    candidate_value: float | None = None
    champion_version: int | None = None
    champion_value: float | None = None


def _run_metrics(client: MlflowClient, run_id: str) -> dict[str, float]:
    return dict(client.get_run(run_id).data.metrics)


def promote(
    name: str, *, metric: str, candidate: str = "candidate", champion: str = "champion"
) -> Promotion:
    """Move alias ``champion`` to the ``candidate`` version if it has earned it.

    It has when every gate its training run logged passed and its test ``metric`` beats
    the current champion's (lower wins for losses and errors). The first candidate
    becomes champion when its gates pass.

    Raises:
        ModelError: there is no candidate, or its run lacks the metric.
    """
    client = MlflowClient()
    new = _version(client, name, candidate, None)
    new_metrics = _run_metrics(client, str(new.run_id))
    key = f"test_{metric}"
    if key not in new_metrics:
        raise ModelError(
            f"{name} v{new.version} ({candidate}): its run has no metric {key!r}; "
            f"set `model.metric` to one it logged: "
            f"{sorted(k[5:] for k in new_metrics if k.startswith('test_'))}"
        )
    value = new_metrics[key]
    decision = Promotion(False, "", metric, int(new.version), value)
    gates = {k[len(GATE_PREFIX) :]: v for k, v in new_metrics.items() if k.startswith(GATE_PREFIX)}
    if not gates:
        return replace(decision, reason=f"v{new.version} logged no gates; retrain it (03_train)")
    failed = sorted(k for k, v in gates.items() if v < 1)
    if failed:
        return replace(decision, reason=f"v{new.version} failed gate(s): {', '.join(failed)}")
    try:
        old = client.get_model_version_by_alias(name, champion)
    except MlflowException:
        old = None
    if old is not None:
        old_value = _run_metrics(client, str(old.run_id)).get(key)
        decision = replace(decision, champion_version=int(old.version), champion_value=old_value)
        if old.version == new.version:
            return replace(decision, reason=f"v{new.version} is already the {champion}")
        if old_value is not None and not is_better(metric, value, old_value):
            word = "lower" if metric in LOWER_IS_BETTER else "higher"
            return replace(
                decision,
                reason=f"v{new.version} {metric}={value:.4f} does not beat {champion} "
                f"v{old.version} {metric}={old_value:.4f} ({word} is better)",
            )
    try:
        client.set_registered_model_alias(name, champion, str(new.version))
    except MlflowException as exc:
        raise TrackingError(f"cannot set alias {champion!r} on {name}: {exc.message}") from exc
    was = f" (was v{old.version})" if old is not None else " (first champion)"
    return replace(decision, promoted=True, reason=f"v{new.version} is now {champion}{was}")
