"""Batch prediction: score events with a fitted pipeline, using the same feature code."""

from __future__ import annotations

from typing import Any

import polars as pl

from .errors import ModelError
from .features import FeatureSet, model_inputs

__all__ = ["predict_frame"]


def predict_frame(
    pipeline: Any,
    features: FeatureSet,
    *,
    threshold: float = 0.5,
    model: str | None = None,
    model_version: int | None = None,
) -> pl.DataFrame:
    """Score every event of a feature set.

    Args:
        pipeline: the fitted pipeline (a classifier, or a regressor).
        features: features built for prediction (``with_target=False``).
        threshold: probability at or above which an event is predicted positive.
        model: registered model name, written in a ``model`` column when given.
        model_version: its version, written in a ``model_version`` column when given.

    Returns:
        Keys, event time, then ``probability`` and ``prediction`` (0/1) for a classifier,
        or ``prediction`` for a regressor; then ``model`` and ``model_version``.

    Raises:
        ModelError: the pipeline expects columns the feature set does not have, or
            there is nothing to score.
    """
    expected = list(getattr(pipeline, "feature_names_in_", features.columns))
    missing = [c for c in expected if c not in features.frame.columns]
    if missing:
        raise ModelError(
            f"the model needs feature columns {missing}, which the feature set lacks; "
            "retrain the model or fix the feature spec."
        )
    if features.frame.height == 0:
        raise ModelError("no events to score in the prediction window; check `predict.start`/`end`")
    inputs = model_inputs(features.frame, expected)
    if hasattr(pipeline, "predict_proba"):
        probability = pl.Series("probability", pipeline.predict_proba(inputs)[:, 1])
        scored = [probability, (probability >= threshold).cast(pl.Int8).alias("prediction")]
    else:
        scored = [pl.Series("prediction", pipeline.predict(inputs), dtype=pl.Float64)]
    labels = []
    if model is not None:
        labels.append(pl.lit(model).alias("model"))
    if model_version is not None:
        labels.append(pl.lit(model_version, dtype=pl.Int64).alias("model_version"))
    return features.frame.select(*features.keys, features.event_time).with_columns(*scored, *labels)
