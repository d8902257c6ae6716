"""The model registry on a real MLflow store: nested grid trials, registration with a
signature and input example, promotion from candidate to champion, and loading."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from featurepipe import registry, tracking
from featurepipe.errors import ModelError
from featurepipe.features import model_inputs
from featurepipe.predict import predict_frame
from featurepipe.train import quality_gates, train_model

from .test_train import START, synthetic

NAME = "delay"


@pytest.fixture
def store(tmp_path: Path) -> MlflowClient:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.configure(uri, "test", tmp_path / "mlruns")
    yield MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(None)


def _train_and_register(max_iter: int, *, bound: float = 0.0, **params: int) -> int:
    fs = synthetic(1500)
    params = {"max_iter": max_iter, **params}
    model = train_model(fs, test_start=START + timedelta(hours=6000), params=params)
    with mlflow.start_run(run_name=f"train {max_iter}"):
        tracking.log_metrics({f"test_{k}": v for k, v in model.metrics.items()})
        registry.log_gates(quality_gates(model, "roc_auc", {"roc_auc": bound}))
        return registry.log_registered_model(
            model.pipeline, registered_name=NAME, alias="candidate",
            input_example=model_inputs(fs.frame.head(5), model.columns), metadata={"n": max_iter},
        )  # fmt: skip


def test_promotion_needs_passed_gates_and_a_better_metric(store: MlflowClient) -> None:
    with pytest.raises(ModelError, match="no alias 'candidate'"):
        registry.promote(NAME, metric="roc_auc")

    assert _train_and_register(20) == 1
    first = registry.promote(NAME, metric="roc_auc")
    assert first.promoted and "first champion" in first.reason
    again = registry.promote(NAME, metric="roc_auc")
    assert not again.promoted and "already the champion" in again.reason

    assert _train_and_register(1, max_depth=1) == 2  # a single stump: a worse model
    worse = registry.promote(NAME, metric="roc_auc")
    assert not worse.promoted and "does not beat champion v1" in worse.reason
    assert (worse.candidate_version, worse.champion_version) == (2, 1)
    assert worse.candidate_value < worse.champion_value

    assert _train_and_register(40, bound=0.9999) == 3  # better, but fails its bound gate
    gated = registry.promote(NAME, metric="roc_auc")
    assert not gated.promoted and "failed gate(s): roc_auc_bound" in gated.reason

    assert _train_and_register(40) == 4
    better = registry.promote(NAME, metric="roc_auc")
    assert better.promoted and better.reason == "v4 is now champion (was v1)"
    assert int(store.get_model_version_by_alias(NAME, "champion").version) == 4
    assert registry.promote(NAME, metric="log_loss").promoted is False  # v4 is champion already

    with pytest.raises(ModelError, match="has no metric 'test_rmse'"):
        registry.promote(NAME, metric="rmse")


def test_registered_model_has_signature_example_and_loads_by_alias_or_version(
    store, tmp_path, monkeypatch
) -> None:
    downloads = tmp_path / "tmp"
    downloads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(downloads))
    version = _train_and_register(10)
    registry.promote(NAME, metric="roc_auc")
    info = mlflow.models.get_model_info(f"models:/{NAME}/{version}")
    assert info.signature is not None
    assert [c.name for c in info.signature.inputs] == ["site", "rain"]
    assert info.saved_input_example_info is not None
    assert info.metadata == {"n": 10}
    champion = registry.load_registered_model(NAME)
    exact = registry.load_registered_model(NAME, alias=None, version=version)
    assert (champion.version, exact.version, champion.alias) == (version, version, "champion")
    assert list(downloads.glob("featurepipe-model-*")) == []  # each load's download is removed
    fs = synthetic(300)
    scoring = type(fs)(fs.frame.drop("late"), ["id"], "at", ["site"], ["rain"], None, 0)
    a = predict_frame(champion.pipeline, scoring, model=NAME, model_version=champion.version)
    b = predict_frame(exact.pipeline, scoring)
    assert a["probability"].equals(b["probability"])
    assert a["model_version"].unique().to_list() == [version]
    with pytest.raises(ModelError, match="no version 99"):
        registry.load_registered_model(NAME, version=99)


def test_grid_trials_are_nested_runs(store: MlflowClient) -> None:
    with mlflow.start_run(run_name="03_train") as parent:
        trial = registry.log_trial("trial 0", {"max_iter": 5}, {"validation_roc_auc": 0.7})
    run = store.get_run(trial)
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.data.params == {"max_iter": "5"}
    assert run.info.status == "FINISHED"
