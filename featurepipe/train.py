"""Train, evaluate, save and load the scikit-learn model that predicts the target."""

from __future__ import annotations

import importlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack

import numpy as np
import pandas as pd
import polars as pl
import skops.io
from sklearn import metrics as skm
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GroupShuffleSplit, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils import get_tags

from .errors import ModelError
from .features import FeatureSet, model_inputs

__all__ = [
    "DEFAULT_ESTIMATOR",
    "LOWER_IS_BETTER",
    "TRUSTED_TYPES",
    "GridResult",
    "TrainOptions",
    "TrainedModel",
    "build_pipeline",
    "evaluate",
    "grid_search",
    "is_better",
    "load_model",
    "quality_gates",
    "save_model",
    "split_frame",
    "train_model",
]

DEFAULT_ESTIMATOR = "sklearn.ensemble.HistGradientBoostingClassifier"
Task = Literal["classification", "regression"]
Split = Literal["time", "group", "random"]

# The types outside skops' defaults that our pipelines hold: the trees of histogram
# gradient boosting, and a functools.partial of sklearn's check_array inside it. A test
# compares this list with skops.io.get_untrusted_types, so nothing slips in unreviewed.
TRUSTED_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]

# Metrics where a smaller value is the better model; every other metric is higher-better.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})


@dataclass
class TrainedModel:
    """A fitted pipeline with what it was trained on and how it scored on the test rows.

    ``metrics`` holds each test metric beside ``dummy_<metric>``, the same metric of a
    baseline that ignores the features (class prior, or the training mean).
    """

    pipeline: Pipeline
    categorical: list[str]
    numeric: list[str]
    target: str
    task: Task
    estimator: str
    params: dict[str, Any]
    split: Split
    threshold: float
    metrics: dict[str, float]
    train_rows: int
    test_rows: int
    test_start: datetime | None
    test_scores: pl.DataFrame = field(repr=False)
    test_frame: pl.DataFrame = field(repr=False)
    boolean: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """Input columns of the pipeline, in order."""
        return self.categorical + self.numeric + self.boolean


def _estimator(path: str, params: Mapping[str, Any]) -> BaseEstimator:
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ModelError(
            f"estimator {path!r} cannot be imported: {exc}; give a class path such as "
            f"{DEFAULT_ESTIMATOR!r}"
        ) from exc
    try:
        estimator: BaseEstimator = cls(**params)
    except TypeError as exc:
        raise ModelError(f"estimator {path}: bad parameters {dict(params)}: {exc}") from exc
    if not (hasattr(estimator, "fit") and hasattr(estimator, "get_params")):
        raise ModelError(f"{path} is not a scikit-learn estimator (no fit/get_params)")
    return estimator


def build_pipeline(
    categorical: list[str],
    numeric: list[str],
    boolean: list[str] | None = None,
    *,
    estimator: str = DEFAULT_ESTIMATOR,
    params: Mapping[str, Any] | None = None,
    random_state: int = 0,
) -> Pipeline:
    """A pipeline shaped by the feature types and what the estimator accepts.

    Estimators that handle missing values (histogram gradient boosting) get ordinal
    codes for text columns, unknown and missing as NaN, and are told which inputs are
    categorical; others get one-hot text, median-imputed and scaled numbers. Booleans
    arrive as 0/1 numbers. An estimator with a ``random_state`` gets ``random_state``
    unless ``params`` sets it, so a rerun fits the same model.

    Raises:
        ModelError: the estimator cannot be imported or refuses its parameters.
    """
    model = _estimator(estimator, params or {})
    given = params or {}
    if "random_state" in model.get_params() and "random_state" not in given:
        model.set_params(random_state=random_state)  # reruns give identical models
    numbers = numeric + (boolean or [])
    if get_tags(model).input_tags.allow_nan:
        encode = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
        )
        prepare = ColumnTransformer(
            [("categorical", encode, categorical), ("numeric", "passthrough", numbers)],
            verbose_feature_names_out=False,
        )
        if "categorical_features" in model.get_params() and "categorical_features" not in given:
            model.set_params(categorical_features=list(range(len(categorical))))
    else:
        prepare = ColumnTransformer(
            [
                (
                    "categorical",
                    make_pipeline(
                        SimpleImputer(strategy="constant", fill_value="(missing)"),
                        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20),
                    ),
                    categorical,
                ),
                (
                    "numeric",
                    make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                    numbers,
                ),
            ],
            verbose_feature_names_out=False,
        )
    return Pipeline([("prepare", prepare), ("model", model)])


def split_frame(
    frame: pl.DataFrame,
    *,
    split: Split,
    event_time: str,
    test_start: datetime | None = None,
    group: str | None = None,
    test_size: float = 0.25,
    random_state: int = 0,
    stratify: str | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split rows into training and test rows.

    ``time``: events before ``test_start`` train, the rest test (the model never sees its
    test future). ``group``: whole groups (e.g. a carrier) go to one side. ``random``:
    a shuffled split, stratified on ``stratify`` when given.

    Raises:
        ModelError: a setting the split needs is missing, or a side is empty.
    """
    if split == "time":
        if test_start is None:
            raise ModelError("the time split needs `model.test_start`")
        before = pl.col(event_time) < test_start
        train, test = frame.filter(before), frame.filter(~before)
        where = f"time split at {test_start.isoformat()}"
    elif split == "group":
        if group is None or group not in frame.columns:
            raise ModelError(
                f"the group split needs `model.group` naming a column; got {group!r}, "
                f"columns: {frame.columns}"
            )
        splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=random_state)
        train_index, test_index = next(splitter.split(frame, groups=frame[group].to_numpy()))
        train, test = frame[train_index], frame[test_index]
        where = f"group split on {group!r}"
    else:
        labels = frame[stratify].to_numpy() if stratify else None
        index = np.arange(frame.height)
        try:
            train_index, test_index = train_test_split(
                index, test_size=test_size, random_state=random_state, stratify=labels
            )
        except ValueError as exc:
            raise ModelError(f"random split of {frame.height} rows: {exc}") from exc
        train, test = frame[np.sort(train_index)], frame[np.sort(test_index)]
        where = "random split"
    if train.height == 0 or test.height == 0:
        raise ModelError(
            f"{where} leaves {train.height} training and {test.height} test rows; both need "
            "rows. Change `model.test_start`, `model.test_size` or the data range."
        )
    return train, test


def _task(frame: pl.DataFrame, target: str) -> Task:
    values = frame[target]
    if values.dtype.is_integer() and set(values.unique().drop_nulls().to_list()) <= {0, 1}:
        return "classification"
    return "regression"


def _scores(task: Task, y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    if task == "regression":
        return {
            "rmse": float(skm.root_mean_squared_error(y, p)),
            "mae": float(skm.mean_absolute_error(y, p)),
            "r2": float(skm.r2_score(y, p)),
        }
    predicted = (p >= threshold).astype(int)
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "pr_auc": float(skm.average_precision_score(y, p)),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0)),
        "precision": float(skm.precision_score(y, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0)),
    }


def _predict(pipeline: Any, task: Task, inputs: pd.DataFrame) -> np.ndarray:
    if task == "classification":
        return np.asarray(pipeline.predict_proba(inputs)[:, 1])
    return np.asarray(pipeline.predict(inputs), dtype=float)


def evaluate(
    pipeline: Any,
    frame: pl.DataFrame,
    columns: list[str],
    target: str,
    *,
    task: Task = "classification",
    threshold: float = 0.5,
) -> dict[str, float]:
    """The metrics of a fitted pipeline on labelled rows.

    Classification: ROC AUC, PR AUC, log loss, Brier score, and F1, precision and
    recall at ``threshold``. Regression: RMSE, MAE and R².

    Raises:
        ModelError: a classification test set holds a single class.
    """
    y = frame[target].to_numpy()
    if task == "classification" and len(np.unique(y)) < 2:
        raise ModelError(
            f"cannot evaluate on {frame.height} rows with a single class in {target!r}; "
            "widen the test period."
        )
    return _scores(task, y, _predict(pipeline, task, model_inputs(frame, columns)), threshold)


def _baseline(task: Task, train: pl.DataFrame, test: pl.DataFrame, target: str, threshold: float):
    dummy = DummyClassifier(strategy="prior") if task == "classification" else DummyRegressor()
    dummy.fit(np.zeros((train.height, 1)), train[target].to_numpy())
    predicted = _predict(dummy, task, pd.DataFrame(np.zeros((test.height, 1))))
    return _scores(task, test[target].to_numpy(), predicted, threshold)


def train_model(
    features: FeatureSet,
    *,
    estimator: str = DEFAULT_ESTIMATOR,
    params: Mapping[str, Any] | None = None,
    split: Split = "time",
    test_start: datetime | None = None,
    group: str | None = None,
    test_size: float = 0.25,
    threshold: float = 0.5,
    random_state: int = 0,
) -> TrainedModel:
    """Fit the pipeline on the training rows and evaluate it, beside a dummy baseline.

    Args:
        features: a feature set built with its target.
        estimator: import path of a scikit-learn estimator class.
        params: its parameters.
        split: ``time`` (needs ``test_start``), ``group`` (needs ``group``) or ``random``.
        test_start: first event time of the test rows, for the time split.
        group: column whose values are kept on one side, for the group split.
        test_size: share of rows (or groups) that test, for group and random splits.
        threshold: probability at or above which a row is predicted positive (F1 etc.).
        random_state: seed of the group and random splits.

    Raises:
        ModelError: no target, an empty split, or the estimator fails to fit.
    """
    if features.target is None:
        raise ModelError("the feature set has no target; build it with with_target=True")
    target = features.target
    task = _task(features.frame, target)
    train, test = split_frame(
        features.frame,
        split=split,
        event_time=features.event_time,
        test_start=test_start,
        group=group,
        test_size=test_size,
        random_state=random_state,
        stratify=target if task == "classification" else None,
    )
    params = dict(params or {})
    pipeline = build_pipeline(
        features.categorical,
        features.numeric,
        features.boolean,
        estimator=estimator,
        params=params,
        random_state=random_state,
    )
    columns = features.columns
    try:
        pipeline.fit(model_inputs(train, columns), train[target].to_numpy())
    except ValueError as exc:
        raise ModelError(f"training {estimator} failed: {exc}") from exc
    metrics = evaluate(pipeline, test, columns, target, task=task, threshold=threshold)
    baseline = _baseline(task, train, test, target, threshold)
    metrics |= {f"dummy_{k}": v for k, v in baseline.items()}
    if task == "classification":
        metrics["positive_rate"] = float(test[target].mean())  # type: ignore[arg-type]
    predicted = _predict(pipeline, task, model_inputs(test, columns))
    scores = test.select(*features.keys, features.event_time, target).with_columns(
        pl.Series("probability" if task == "classification" else "prediction", predicted)
    )
    return TrainedModel(
        pipeline=pipeline,
        categorical=features.categorical,
        numeric=features.numeric,
        boolean=features.boolean,
        target=target,
        task=task,
        estimator=estimator,
        params=params,
        split=split,
        threshold=threshold,
        metrics=metrics,
        train_rows=train.height,
        test_rows=test.height,
        test_start=test_start if split == "time" else None,
        test_scores=scores,
        test_frame=test.select(columns),
    )


def is_better(metric: str, value: float, than: float) -> bool:
    """Whether ``value`` of ``metric`` beats ``than`` (lower wins for losses and errors)."""
    return value < than if metric in LOWER_IS_BETTER else value > than


def quality_gates(
    model: TrainedModel, metric: str, minimums: Mapping[str, float]
) -> dict[str, bool]:
    """The gates a model must pass to be promoted.

    ``beats_baseline``: the model beats the dummy baseline on ``metric``. Each entry
    of ``minimums`` (metric to bound) demands at least that value, or at most it for a
    lower-is-better metric.

    Raises:
        ModelError: a metric named is not one this task computes.
    """
    known = {k for k in model.metrics if not k.startswith("dummy_")}
    for name in [metric, *minimums]:
        if name not in known:
            raise ModelError(
                f"metric {name!r} is not computed for {model.task}; use {sorted(known)}"
            )
    gates = {
        "beats_baseline": is_better(metric, model.metrics[metric], model.metrics[f"dummy_{metric}"])
    }
    for name, bound in minimums.items():
        value = model.metrics[name]
        gates[f"{name}_bound"] = value <= bound if name in LOWER_IS_BETTER else value >= bound
    return gates


@dataclass(frozen=True)
class GridResult:
    """One parameter combination of a grid, scored on the validation rows."""

    params: dict[str, Any]
    metrics: dict[str, float]


class TrainOptions(TypedDict, total=False):
    """The keyword options of ``train_model``, which ``grid_search`` passes on."""

    estimator: str
    params: Mapping[str, Any] | None
    split: Split
    test_start: datetime | None
    group: str | None
    test_size: float
    threshold: float
    random_state: int


def grid_search(
    features: FeatureSet,
    grid: Mapping[str, list[Any]],
    *,
    metric: str,
    validation_size: float = 0.2,
    **options: Unpack[TrainOptions],
) -> tuple[dict[str, Any], list[GridResult]]:
    """Score every combination of ``grid`` on validation rows carved out of the training rows.

    The test rows are never looked at: the training rows are split again the same way
    (for a time split, the latest ``validation_size`` of them validate).

    Args:
        features: a feature set built with its target.
        grid: parameter name to the values to try; every combination is tried.
        metric: the metric that picks the best combination.
        validation_size: share of the training rows (or groups) that validate.
        **options: the options of ``train_model`` (estimator, params, split, ...).

    Returns:
        The best parameters (``params`` updated by the winning combination) and every result.
    """
    if features.target is None:
        raise ModelError("the feature set has no target; build it with with_target=True")
    split = options.get("split", "time")
    train, _ = split_frame(
        features.frame, split=split, event_time=features.event_time,
        test_start=options.get("test_start"), group=options.get("group"),
        test_size=options.get("test_size", 0.25), random_state=options.get("random_state", 0),
    )  # fmt: skip
    validation_start = None
    if split == "time":
        times = train[features.event_time].sort()
        validation_start = times[int(len(times) * (1 - validation_size))]
    inner = FeatureSet(
        train, features.keys, features.event_time, features.categorical, features.numeric,
        features.target, 0, features.boolean,
    )  # fmt: skip
    names = list(grid)
    results = []
    for values in itertools.product(*(grid[n] for n in names)):
        trial = {**(options.get("params") or {}), **dict(zip(names, values, strict=True))}
        trial_options: TrainOptions = {**options, "params": trial}
        trial_options |= {"test_start": validation_start, "test_size": validation_size}
        model = train_model(inner, **trial_options)
        results.append(GridResult(trial, model.metrics))
    if not results:
        raise ModelError("the parameter grid is empty; give at least one value per parameter")
    best = results[0]
    for result in results[1:]:
        if is_better(metric, result.metrics[metric], best.metrics[metric]):
            best = result
    return best.params, results


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
        "task": model.task,
        "estimator": model.estimator,
        "categorical": model.categorical,
        "numeric": model.numeric,
        "boolean": model.boolean,
        "params": model.params,
        "split": model.split,
        "threshold": model.threshold,
        "metrics": model.metrics,
        "train_rows": model.train_rows,
        "test_rows": model.test_rows,
        "test_start": model.test_start.isoformat() if model.test_start else None,
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
