"""Read and validate ``featurepipe.toml`` once; everything else takes values.

The settings are split by what they configure: ``table`` (options every source shares:
type hints, contracts, load modes), ``sources`` (one model per connector kind),
``features``, ``model`` (training and prediction), ``flow`` (the notebooks) and
``project`` (destination, tracking, the whole ``Config`` and ``load_config``). Import
the names from here.
"""

from __future__ import annotations

from .features import AsOfJoin, FeaturesConfig, FunctionFeature, Lookup, TargetConfig, Window
from .flow import FlowConfig, StepConfig
from .model import ModelConfig, PredictConfig
from .project import CONFIG_FILE, Config, DestinationConfig, TrackingConfig, load_config
from .sources import (
    PUSH_RECEIVED_AT_FORMAT,
    SOURCE_KINDS,
    FileSourceConfig,
    HttpAuth,
    HttpSourceConfig,
    Pagination,
    PushSourceConfig,
    SourceConfig,
    SqlSourceConfig,
)
from .table import DEFAULT_NULL_VALUES, ColumnHint, LogicalType, table_options

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_NULL_VALUES",
    "AsOfJoin",
    "ColumnHint",
    "Config",
    "DestinationConfig",
    "FeaturesConfig",
    "FileSourceConfig",
    "PUSH_RECEIVED_AT_FORMAT",
    "PushSourceConfig",
    "FlowConfig",
    "FunctionFeature",
    "HttpAuth",
    "HttpSourceConfig",
    "LogicalType",
    "Lookup",
    "ModelConfig",
    "Pagination",
    "PredictConfig",
    "SOURCE_KINDS",
    "SourceConfig",
    "SqlSourceConfig",
    "StepConfig",
    "TargetConfig",
    "TrackingConfig",
    "Window",
    "load_config",
    "table_options",
]
