"""featurepipe: a notebook-first ML feature pipeline.

The public API, shared by the notebooks and the CLI. Names are imported on first
use, so ``import featurepipe`` stays fast and the CLI starts quickly.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# MLflow imports tqdm.auto, which in a Jupyter kernel without ipywidgets warns "IProgress not
# found" into every notebook that logs to MLflow. featurepipe shows no progress widgets; this
# filter matches that one warning of tqdm.auto and nothing else.
warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm.auto")

_EXPORTS: dict[str, str] = {
    # configuration
    "Config": "config",
    "load_config": "config",
    # errors
    "FeaturepipeError": "errors",
    "ConfigError": "errors",
    "SourceError": "errors",
    "SchemaError": "errors",
    "ValidationFailed": "errors",
    "DestinationError": "errors",
    "FeatureError": "errors",
    "ModelError": "errors",
    "TrackingError": "errors",
    "FlowError": "errors",
    "StepFailed": "errors",
    "StateError": "errors",
    # stages
    "Extract": "connectors",
    "extract_file": "connectors",
    "Extraction": "connectors",
    "extract_source": "connectors",
    "CONNECTORS": "connectors",
    "StateStore": "state",
    "Ingest": "ingest",
    "StagedTable": "staging",
    "stage_table": "staging",
    "TypedTable": "schema",
    "apply_schema": "schema",
    "infer_types": "schema",
    "infer_column": "schema",
    "ColumnType": "schema",
    "SchemaStore": "schema",
    "TableSchema": "schema",
    "profile_table": "schema",
    "CleanTable": "clean",
    "clean_table": "clean",
    "ValidationReport": "validate",
    "validate_tables": "validate",
    "require_valid": "validate",
    "DeltaDestination": "destinations",
    "LoadResult": "destinations",
    "open_destination": "destinations",
    "open_warehouse": "warehouse",
    "read_table": "warehouse",
    "FeatureSet": "features",
    "build_features": "features",
    "describe_features": "features",
    "input_tables": "features",
    "frame_digest": "features",
    "TRUSTED_TYPES": "train",
    "TrainedModel": "train",
    "train_model": "train",
    "grid_search": "train",
    "quality_gates": "train",
    "model_inputs": "features",
    "save_model": "train",
    "load_model": "train",
    "plot_model": "plots",
    "predict_frame": "predict",
    # the flow
    "FlowResult": "flow",
    "run_flow": "flow",
    "new_run_id": "flow",
    "open_step": "flow",
    "finish_step": "flow",
    "read_step_summary": "flow",
}

_MODULES = ("tracking", "registry")  # MLflow: run tracking; the model registry

__all__ = [*_EXPORTS, *_MODULES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'featurepipe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from . import registry, tracking
    from .clean import CleanTable, clean_table
    from .config import Config, load_config
    from .connectors import CONNECTORS, Extract, Extraction, extract_file, extract_source
    from .destinations import DeltaDestination, LoadResult, open_destination
    from .errors import (
        ConfigError,
        DestinationError,
        FeatureError,
        FeaturepipeError,
        FlowError,
        ModelError,
        SchemaError,
        SourceError,
        StateError,
        StepFailed,
        TrackingError,
        ValidationFailed,
    )
    from .features import (
        FeatureSet,
        build_features,
        describe_features,
        frame_digest,
        input_tables,
        model_inputs,
    )
    from .flow import FlowResult, finish_step, new_run_id, open_step, read_step_summary, run_flow
    from .ingest import Ingest
    from .plots import plot_model
    from .predict import predict_frame
    from .schema import (
        ColumnType,
        SchemaStore,
        TableSchema,
        TypedTable,
        apply_schema,
        infer_column,
        infer_types,
        profile_table,
    )
    from .staging import StagedTable, stage_table
    from .state import StateStore
    from .train import (
        TRUSTED_TYPES,
        TrainedModel,
        grid_search,
        load_model,
        quality_gates,
        save_model,
        train_model,
    )
    from .validate import ValidationReport, require_valid, validate_tables
    from .warehouse import open_warehouse, read_table
