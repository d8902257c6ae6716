"""Batch prediction: score events with a fitted pipeline, using the same feature code."""

from __future__ import annotations

import polars as pl
from sklearn.pipeline import Pipeline

from .errors import ModelError
from .features import FeatureSet

__all__ = ["predict_frame"]


def predict_frame(
    pipeline: Pipeline, features: FeatureSet, *, threshold: float = 0.5
) -> pl.DataFrame:
    """Score every event of a feature set.

    Args:
        pipeline: the fitted pipeline.
        features: features built for prediction (``with_target=False``).
        threshold: probability at or above which an event is predicted positive.

    Returns:
        Keys, event time, ``probability`` and ``prediction`` (0/1) per event.

    Raises:
        ModelError: the pipeline expects columns the feature set does not have.
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
    probability = pipeline.predict_proba(features.frame.select(expected).to_pandas())[:, 1]
    return features.frame.select(*features.keys, features.event_time).with_columns(
        pl.Series("probability", probability),
        (pl.Series("probability", probability) >= threshold).cast(pl.Int8).alias("prediction"),
    )
