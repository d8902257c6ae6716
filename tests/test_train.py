"""Training, evaluation, skops save/load with an explicit trust list, and prediction."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
import skops.io
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from featurepipe.errors import ModelError
from featurepipe.features import FeatureSet
from featurepipe.predict import predict_frame
from featurepipe.train import TRUSTED_TYPES, load_model, save_model, train_model

START = datetime(2013, 1, 1, tzinfo=UTC)


def synthetic(n: int = 4000, seed: int = 0) -> FeatureSet:
    """Late when it rains at a busy site: a signal a model must find."""
    rng = np.random.default_rng(seed)
    site = rng.choice(["A", "B", "C"], n)
    rain = rng.random(n)
    noise = rng.random(n)
    late = ((rain > 0.6) & (site != "C")) | (noise > 0.95)
    frame = pl.DataFrame(
        {
            "id": np.arange(n),
            "at": [START + timedelta(hours=int(h)) for h in np.sort(rng.integers(0, 8000, n))],
            "site": site,
            "rain": rain,
            "late": late.astype(np.int8),
        }
    ).with_columns(pl.col("at").dt.replace_time_zone("UTC"))
    return FeatureSet(frame, ["id"], "at", ["site"], ["rain"], "late", 0)


def test_model_learns_a_real_signal_and_splits_by_time() -> None:
    fs = synthetic()
    test_start = START + timedelta(hours=6000)
    model = train_model(fs, test_start=test_start, params={"max_iter": 30})
    assert model.metrics["roc_auc"] > 0.85
    assert 0 < model.metrics["pr_auc"] <= 1
    assert model.train_rows + model.test_rows == fs.frame.height
    assert model.test_scores["at"].min() >= test_start
    assert model.train_rows == fs.frame.filter(pl.col("at") < test_start).height


def test_empty_split_is_an_error() -> None:
    with pytest.raises(ModelError, match="time split"):
        train_model(synthetic(), test_start=START - timedelta(days=1))


def test_trusted_types_are_exactly_what_the_pipeline_needs() -> None:
    model = train_model(
        synthetic(500), test_start=START + timedelta(hours=6000), params={"max_iter": 5}
    )
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model.pipeline))
    assert sorted(untrusted) == sorted(TRUSTED_TYPES)


def test_save_load_round_trip_and_prediction(tmp_path) -> None:
    fs = synthetic()
    model = train_model(fs, test_start=START + timedelta(hours=6000), params={"max_iter": 20})
    path = save_model(model, tmp_path, "m", {"run": "r1"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.skops"]
    loaded = load_model(path)
    scoring = FeatureSet(fs.frame.drop("late"), ["id"], "at", ["site"], ["rain"], None, 0)
    before = predict_frame(model.pipeline, scoring)
    after = predict_frame(loaded, scoring, threshold=0.5)
    assert before.equals(after)
    assert after.columns == ["id", "at", "probability", "prediction"]
    assert after["prediction"].to_list() == (after["probability"] >= 0.5).cast(int).to_list()


def test_untrusted_model_file_is_refused(tmp_path) -> None:
    hostile = Pipeline([("f", FunctionTransformer(os.getcwd))])  # could be os.system
    path = tmp_path / "hostile.skops"
    skops.io.dump(hostile, path)
    assert skops.io.get_untrusted_types(file=path)  # the premise: it holds an untrusted type
    with pytest.raises(ModelError, match="refusing to load"):
        load_model(path)
    with pytest.raises(ModelError, match="no model at"):
        load_model(tmp_path / "missing.skops")


def test_prediction_needs_the_models_columns() -> None:
    fs = synthetic(500)
    model = train_model(fs, test_start=START + timedelta(hours=6000), params={"max_iter": 5})
    narrow = FeatureSet(fs.frame.drop("rain"), ["id"], "at", ["site"], [], None, 0)
    with pytest.raises(ModelError, match=r"\['rain'\]"):
        predict_frame(model.pipeline, narrow)
