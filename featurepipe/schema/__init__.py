"""Types: infer them from raw values, apply them, and quarantine what does not fit."""

from __future__ import annotations

from .contract import QUARANTINE_SCHEMA, TypedTable, apply_schema
from .infer import LOGICAL_TYPES, infer_types, polars_type

__all__ = [
    "LOGICAL_TYPES",
    "QUARANTINE_SCHEMA",
    "TypedTable",
    "apply_schema",
    "infer_types",
    "polars_type",
]
