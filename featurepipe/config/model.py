"""Training and batch prediction settings: estimator, split, metrics, gates, scoring."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from .table import _Model


class ModelConfig(_Model):
    """The scikit-learn model: estimator, split, metrics, grid, gates and registry entry."""

    name: str = "model"
    alias: str = Field(default="candidate", description="alias a newly trained version gets")
    champion_alias: str = Field(default="champion", description="alias `promote` moves")
    estimator: str = Field(
        default="sklearn.ensemble.HistGradientBoostingClassifier",
        pattern=r"^[\w.]+\.\w+$",
        description="import path of a scikit-learn estimator class",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="estimator parameters")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="parameter -> values; every combination is tried"
    )
    split: Literal["time", "group", "random"] = "time"
    test_start: datetime | None = Field(
        default=None, description="time split: events at or after this time form the test set"
    )
    group: str | None = Field(default=None, description="group split: the grouping column")
    test_size: float = Field(default=0.25, gt=0, lt=1, description="group/random split share")
    validation_size: float = Field(default=0.2, gt=0, lt=1, description="grid: share of train")
    metric: str = Field(default="roc_auc", description="chooses among the grid and promotes")
    threshold: float = Field(default=0.5, ge=0, le=1, description="classification cut-off")
    gates: dict[str, float] = Field(
        default_factory=dict, description="metric -> bound a model must reach to be promoted"
    )
    auto_promote: bool = Field(
        default=True, description="03_train runs `promote` right after registering"
    )
    random_state: int = 0

    @model_validator(mode="after")
    def _split(self) -> ModelConfig:
        if self.split == "time":
            if self.test_start is None:
                raise ValueError("the time split needs test_start, e.g. 2013-10-01T00:00:00-04:00")
            if self.test_start.tzinfo is None:
                raise ValueError("test_start needs a UTC offset, e.g. 2013-10-01T00:00:00-04:00")
        if self.split == "group" and not self.group:
            raise ValueError("the group split needs `group`, the column whose values stay together")
        return self


class PredictConfig(_Model):
    """Batch prediction: which events to score and where to write the scores."""

    start: datetime
    end: datetime | None = None
    table: str = "predictions"
    threshold: float = Field(default=0.5, ge=0, le=1)
    alias: str = Field(default="champion", description="registered model alias to score with")
