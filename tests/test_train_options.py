"""Training options: estimators from config, splits, metrics beside a dummy baseline,
gates, the parameter grid and the test-set plots."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from featurepipe.errors import ModelError
from featurepipe.features import FeatureSet
from featurepipe.plots import plot_model
from featurepipe.train import grid_search, quality_gates, split_frame, train_model

from .test_train import START, synthetic

TEST_START = START + timedelta(hours=6000)


def test_metrics_sit_beside_a_dummy_baseline() -> None:
    model = train_model(synthetic(), test_start=TEST_START, params={"max_iter": 30})
    m = model.metrics
    for name in ("roc_auc", "pr_auc", "log_loss", "brier", "f1", "precision", "recall"):
        assert f"dummy_{name}" in m, name
    assert m["dummy_roc_auc"] == 0.5
    assert m["roc_auc"] > m["dummy_roc_auc"] and m["log_loss"] < m["dummy_log_loss"]
    assert m["f1"] > m["dummy_f1"]
    assert quality_gates(model, "roc_auc", {"roc_auc": 0.8, "brier": 0.2}) == {
        "beats_baseline": True, "roc_auc_bound": True, "brier_bound": True,
    }  # fmt: skip
    assert not quality_gates(model, "log_loss", {"roc_auc": 0.999})["roc_auc_bound"]
    with pytest.raises(ModelError, match="rmse"):
        quality_gates(model, "rmse", {})


def test_estimator_and_params_come_from_config_and_shape_the_pipeline() -> None:
    fs = synthetic(2000)
    frame = fs.frame.with_columns(
        pl.when(pl.col("id") % 7 == 0).then(None).otherwise(pl.col("rain")).alias("rain"),
        (pl.col("id") % 2 == 0).alias("even"),
    )
    fs = FeatureSet(frame, ["id"], "at", ["site"], ["rain"], "late", 0, ["even"])
    model = train_model(
        fs, estimator="sklearn.linear_model.LogisticRegression", params={"C": 0.5},
        test_start=TEST_START,
    )  # fmt: skip
    assert model.pipeline.named_steps["model"].C == 0.5
    prepare = model.pipeline.named_steps["prepare"]
    assert type(prepare.named_transformers_["categorical"][-1]).__name__ == "OneHotEncoder"
    assert model.metrics["roc_auc"] > 0.7  # missing values imputed, text one-hot encoded
    assert model.columns == ["site", "rain", "even"]
    with pytest.raises(ModelError, match="cannot be imported"):
        train_model(fs, estimator="sklearn.nope.Nothing", test_start=TEST_START)
    with pytest.raises(ModelError, match="bad parameters"):
        train_model(fs, params={"max_itr": 3}, test_start=TEST_START)


def test_group_split_keeps_each_group_on_one_side_and_random_split_stratifies() -> None:
    fs = synthetic(3000)
    frame = fs.frame.with_columns((pl.col("id") % 40).alias("plane"))
    train, test = split_frame(frame, split="group", event_time="at", group="plane", test_size=0.25)
    assert not set(train["plane"]) & set(test["plane"])
    assert len(set(test["plane"])) == 10
    train, test = split_frame(
        frame, split="random", event_time="at", test_size=0.2, stratify="late", random_state=1
    )
    assert test.height == 600 and train.height + test.height == 3000
    assert abs(test["late"].mean() - train["late"].mean()) < 0.01
    with pytest.raises(ModelError, match="group"):
        split_frame(frame, split="group", event_time="at", group="nope")
    with pytest.raises(ModelError, match="test_start"):
        split_frame(frame, split="time", event_time="at")


def test_regression_target_gets_regression_metrics_and_plots(tmp_path) -> None:
    rng = np.random.default_rng(3)
    fs = synthetic(2000)
    frame = fs.frame.with_columns(
        (pl.col("rain") * 60 + pl.Series(rng.normal(0, 5, 2000))).alias("minutes")
    ).drop("late")
    regression = FeatureSet(frame, ["id"], "at", ["site"], ["rain"], "minutes", 0)
    model = train_model(
        regression, estimator="sklearn.ensemble.HistGradientBoostingRegressor",
        params={"max_iter": 30}, split="random", test_size=0.3,
    )  # fmt: skip
    assert model.task == "regression"
    assert model.metrics["r2"] > 0.8 and model.metrics["dummy_r2"] <= 0
    assert model.metrics["rmse"] < model.metrics["dummy_rmse"]
    figures = plot_model(model, importance_rows=300)
    assert sorted(figures) == ["actual_vs_predicted.png", "permutation_importance.png",
                               "residuals.png"]  # fmt: skip


def test_classification_plots_are_png_figures(tmp_path) -> None:
    model = train_model(synthetic(1500), test_start=TEST_START, params={"max_iter": 10})
    figures = plot_model(model, importance_rows=300)
    assert sorted(figures) == ["calibration.png", "confusion_matrix.png",
                               "permutation_importance.png", "precision_recall.png",
                               "roc.png"]  # fmt: skip
    path = tmp_path / "roc.png"
    figures["roc.png"].savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = [t.get_text() for t in figures["permutation_importance.png"].axes[0].get_yticklabels()]
    assert labels[-1] == "rain"  # the column the synthetic target depends on most


def test_grid_picks_by_validation_rows_and_never_looks_at_the_test_rows() -> None:
    fs = synthetic(3000)
    grid = {"max_iter": [1, 40], "learning_rate": [0.01, 0.2]}
    best, results = grid_search(fs, grid, metric="roc_auc", test_start=TEST_START)
    assert len(results) == 4
    assert best == max(results, key=lambda r: r.metrics["roc_auc"]).params
    flipped = fs.frame.with_columns(
        pl.when(pl.col("at") >= TEST_START).then(1 - pl.col("late")).otherwise(pl.col("late"))
        .alias("late")
    )  # fmt: skip
    poisoned = FeatureSet(flipped, ["id"], "at", ["site"], ["rain"], "late", 0)
    best_again, results_again = grid_search(poisoned, grid, metric="roc_auc", test_start=TEST_START)
    assert best_again == best
    assert [r.metrics for r in results_again] == [r.metrics for r in results]
    lowest, _ = grid_search(fs, {"max_iter": [1, 40]}, metric="log_loss", test_start=TEST_START)
    assert lowest == {"max_iter": 40}
