"""Train, evaluate, save and load the scikit-learn model that predicts the target."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from .errors import ModelError
from .features import FeatureSet

__all__ = [
    "TRUSTED_TYPES",
    "TrainedModel",
    "build_pipeline",
    "evaluate",
    "load_model",
    "save_model",
    "split_by_time",
    "train_model",
]

# The types outside skops' defaults that our pipeline holds: the trees of histogram
# gradient boosting, and a functools.partial of sklearn's check_array inside it. A test
# compares this list with skops.io.get_untrusted_types, so nothing slips in unreviewed.
TRUSTED_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]


@dataclass
class TrainedModel:
    """A fitted pipeline with what it was trained on and how it scored on the test period."""

    pipeline: Pipeline
    categorical: list[str]
    numeric: list[str]
    target: str
    params: dict[str, Any]
    metrics: dict[str, float]
    train_rows: int
    test_rows: int
    test_start: datetime
    test_scores: pl.DataFrame = field(repr=False)

    @property
    def columns(self) -> list[str]:
        """Input columns of the pipeline, in order."""
        return self.categorical + self.numeric


def build_pipeline(
    categorical: list[str],
    numeric: list[str],
    *,
    max_iter: int = 100,
    learning_rate: float = 0.1,
    max_leaf_nodes: int = 31,
    random_state: int = 0,
) -> Pipeline:
    """Ordinal-encode text columns (unknown and missing become NaN, which the trees
    handle natively) and fit a histogram gradient boosting classifier."""
    encode = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        encoded_missing_value=np.nan,
    )
    prepare = ColumnTransformer(
        [("categorical", encode, categorical), ("numeric", "passthrough", numeric)],
        verbose_feature_names_out=False,
    )
    model = HistGradientBoostingClassifier(
        categorical_features=list(range(len(categorical))),
        max_iter=max_iter,
        learning_rate=learning_rate,
        max_leaf_nodes=max_leaf_nodes,
        early_stopping=False,
        random_state=random_state,
    )
    return Pipeline([("prepare", prepare), ("model", model)])


def split_by_time(
    frame: pl.DataFrame, event_time: str, test_start: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events before ``test_start`` train, the rest test: the model never sees its test future."""
    before = pl.col(event_time) < test_start
    return frame.filter(before), frame.filter(~before)


def _inputs(frame: pl.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame.select(columns).to_pandas()


def evaluate(
    pipeline: Pipeline, frame: pl.DataFrame, columns: list[str], target: str
) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss and Brier score of a fitted pipeline on a labelled frame."""
    y = frame[target].to_numpy()
    if len(np.unique(y)) < 2:
        raise ModelError(
            f"cannot evaluate on {frame.height} rows with a single class in {target!r}; "
            "widen the test period."
        )
    p = pipeline.predict_proba(_inputs(frame, columns))[:, 1]
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "positive_rate": float(y.mean()),
    }


def train_model(
    features: FeatureSet,
    *,
    test_start: datetime,
    max_iter: int = 100,
    learning_rate: float = 0.1,
    max_leaf_nodes: int = 31,
    random_state: int = 0,
) -> TrainedModel:
    """Fit on events before ``test_start`` and evaluate on the events after it.

    Raises:
        ModelError: the feature set has no target, or a split is empty.
    """
    if features.target is None:
        raise ModelError("the feature set has no target; build it with with_target=True")
    train, test = split_by_time(features.frame, features.event_time, test_start)
    if train.height == 0 or test.height == 0:
        raise ModelError(
            f"time split at {test_start.isoformat()} leaves {train.height} training and "
            f"{test.height} test rows; both need rows. Change `model.test_start` or the data range."
        )
    params: dict[str, Any] = {
        "max_iter": max_iter,
        "learning_rate": learning_rate,
        "max_leaf_nodes": max_leaf_nodes,
        "random_state": random_state,
    }
    pipeline = build_pipeline(features.categorical, features.numeric, **params)
    columns = features.columns
    try:
        pipeline.fit(_inputs(train, columns), train[features.target].to_numpy())
    except ValueError as exc:
        raise ModelError(f"training failed: {exc}") from exc
    metrics = evaluate(pipeline, test, columns, features.target)
    scores = test.select(*features.keys, features.event_time, features.target).with_columns(
        pl.Series("probability", pipeline.predict_proba(_inputs(test, columns))[:, 1])
    )
    return TrainedModel(
        pipeline=pipeline,
        categorical=features.categorical,
        numeric=features.numeric,
        target=features.target,
        params=params,
        metrics=metrics,
        train_rows=train.height,
        test_rows=test.height,
        test_start=test_start,
        test_scores=scores,
    )


def save_model(
    model: TrainedModel, models_dir: str | Path, name: str, metadata: dict[str, Any]
) -> Path:
    """Save the pipeline as ``<name>.skops`` and its metadata as ``<name>.json``.

    Both files are written under temporary names and renamed, so ``models/`` never
    holds a half-written model.

    Returns:
        The path of the ``.skops`` file.
    """
    folder = Path(models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.skops"
    info = {
        "name": name,
        "target": model.target,
        "categorical": model.categorical,
        "numeric": model.numeric,
        "params": model.params,
        "metrics": model.metrics,
        "train_rows": model.train_rows,
        "test_rows": model.test_rows,
        "test_start": model.test_start.isoformat(),
        **metadata,
    }
    tmp_model, tmp_info = target.with_suffix(".skops.tmp"), folder / f".{name}.json.tmp"
    skops.io.dump(model.pipeline, tmp_model)
    tmp_info.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    tmp_model.replace(target)
    tmp_info.replace(folder / f"{name}.json")
    return target


def load_model(path: str | Path) -> Pipeline:
    """Load a skops-saved pipeline, trusting only ``TRUSTED_TYPES`` beyond skops' defaults.

    Raises:
        ModelError: the file is missing or holds types outside the trusted list.
    """
    path = Path(path)
    try:
        untrusted = [t for t in skops.io.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
    except FileNotFoundError as exc:
        raise ModelError(f"no model at {path}; train one first (notebooks/03_train)") from exc
    if untrusted:
        raise ModelError(
            f"{path}: refusing to load types that are not trusted: {untrusted}. "
            "Only load models this project trained."
        )
    pipeline: Pipeline = skops.io.load(path, trusted=TRUSTED_TYPES)
    return pipeline
