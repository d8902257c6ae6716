"""Types: infer them from raw values, apply them under a contract, store schemas, quarantine."""

from __future__ import annotations

from .contract import CONTRACT_MODES, QUARANTINE_SCHEMA, ContractMode, TypedTable, apply_schema
from .infer import (
    DEFAULT_NULL_VALUES,
    InferenceOptions,
    infer_column,
    infer_frame,
    infer_types,
    polars_type,
)
from .names import normalize_name, unique_names
from .profile import profile_table
from .store import ColumnSchema, SchemaStore, TableSchema
from .types import LOGICAL_TYPES, ColumnType, parse_expr, widen

__all__ = [
    "CONTRACT_MODES",
    "DEFAULT_NULL_VALUES",
    "LOGICAL_TYPES",
    "QUARANTINE_SCHEMA",
    "ColumnSchema",
    "ColumnType",
    "ContractMode",
    "InferenceOptions",
    "SchemaStore",
    "TableSchema",
    "TypedTable",
    "apply_schema",
    "infer_column",
    "infer_frame",
    "infer_types",
    "normalize_name",
    "parse_expr",
    "polars_type",
    "profile_table",
    "unique_names",
    "widen",
]
