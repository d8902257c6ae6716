"""Type, clean and check a source batch by batch, staging the rows on disk for one load.

This is the ingest flow for a table larger than memory: each extracted batch is typed
(``apply_schema``, against the schema the batches before it reached), cleaned and checked
by the per-row expectations of its suite, then spooled to a Parquet file; its quarantined
values are spooled too. Row counts and uniqueness are checked over the staged table at
the end. Nothing reaches the destination until the whole table passed: a batch that fails
the gate stops the pull, the staged files are removed, and no state moves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from .clean import clean_table
from .destinations.staged import StagedRows
from .schema import QUARANTINE_SCHEMA, TableSchema, apply_schema
from .validate import BatchValidator, ValidationReport

__all__ = ["StagedTable", "stage_table"]

log = logging.getLogger(__name__)


@dataclass
class StagedTable:
    """One source's rows typed, cleaned, checked and staged, waiting for the gate.

    Attributes:
        table: the table.
        rows: the staged rows to load (``Destination.write`` takes them as they are).
        quarantine: the values that did not fit, staged the same way.
        schema: the schema the rows follow, to save once the load committed.
        report: the suite's verdict over every batch.
        rows_in: rows extracted.
        values_quarantined: values moved to quarantine.
        rows_quarantined: rows held back whole because a value did not fit.
        duplicates_removed: rows dropped because a later row had the same primary key.
        batches: batches read.
        changes: schema changes, in the order batches made them.
    """

    table: str
    rows: StagedRows
    quarantine: StagedRows
    schema: TableSchema
    report: ValidationReport
    rows_in: int = 0
    values_quarantined: int = 0
    rows_quarantined: int = 0
    duplicates_removed: int = 0
    batches: int = 0
    changes: list[str] = field(default_factory=list)

    @property
    def types(self) -> dict[str, str]:
        """Column name to logical type name."""
        return self.schema.types

    def close(self) -> None:
        """Remove the staged files (after the load, or when the gate stays shut)."""
        self.rows.close()
        self.quarantine.close()


def stage_table(
    table: str,
    batches: Iterable[pl.DataFrame],
    expectations_dir: str | Path,
    *,
    typing: Mapping[str, Any] | None = None,
    stored: TableSchema | None = None,
    primary_key: Sequence[str] = (),
    load_id: str = "",
    keep: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    folder: str | Path | None = None,
    whole: bool = False,
) -> StagedTable:
    """Type, clean, check and stage a table's raw batches; memory holds one batch.

    Typing per batch follows the table's contract against the schema the earlier batches
    reached: under ``evolve`` a later batch widens a column (the earlier batches are cast
    to the wider type on load), so the result matches typing the table whole whenever the
    first batch already shows each column's type.

    Args:
        table: the table (and source) name.
        batches: the raw batches, e.g. an ``Extraction``.
        expectations_dir: folder holding the table's suite ``<table>.json``.
        typing: ``apply_schema`` options (``SourceConfig.typing_options()``).
        stored: the table's stored schema.
        primary_key: key columns; a key repeated in a later batch keeps its last row.
        load_id: the load id recorded with quarantined values.
        keep: a filter applied to each raw batch before typing (e.g. some months only).
        folder: where to stage (the system's temporary folder by default).
        whole: ``batches`` is the whole table in one batch, checked by the whole suite
            (any expectation allowed), as :func:`~featurepipe.validate.validate_tables`.

    Returns:
        The staged table; check ``report`` (``require_valid``) before loading it, and
        ``close`` it afterwards. When a batch fails an expectation for good, the pull
        stops there and the report says so.

    Raises:
        ConfigError: the suite is missing, or needs the whole table at once.
        SchemaError: a batch breaks a ``freeze`` contract, or a key holds nulls.
    """
    validator = BatchValidator(table, expectations_dir, whole=whole)
    rows, quarantine = StagedRows(table, folder), StagedRows(f"{table}_quarantine", folder)
    staged: StagedTable | None = None
    try:
        staged = _stage(table, batches, validator, rows, quarantine, typing, stored, primary_key,
                        load_id, keep)  # fmt: skip
    finally:
        if staged is None:
            rows.close()
            quarantine.close()
    return staged


def _stage(
    table: str,
    batches: Iterable[pl.DataFrame],
    validator: BatchValidator,
    rows: StagedRows,
    quarantine: StagedRows,
    typing: Mapping[str, Any] | None,
    stored: TableSchema | None,
    primary_key: Sequence[str],
    load_id: str,
    keep: Callable[[pl.DataFrame], pl.DataFrame] | None,
) -> StagedTable:
    schema, changes = stored, list[str]()
    counts = {"rows_in": 0, "values": 0, "held": 0, "duplicates": 0}
    for raw in batches:
        if keep is not None:
            raw = keep(raw)
        typed = apply_schema(
            table, raw, **dict(typing or {}), stored=schema, load_id=load_id,
            row_offset=counts["rows_in"],
        )  # fmt: skip
        schema = typed.schema
        changes += typed.changes
        cleaned = clean_table(table, typed.frame, primary_key)
        counts["rows_in"] += typed.rows_in
        counts["values"] += typed.values_quarantined
        counts["held"] += typed.rows_quarantined
        counts["duplicates"] += cleaned.duplicates_removed
        rows.add(cleaned.frame)
        if typed.quarantine.height:
            quarantine.add(typed.quarantine)
        validator.check(cleaned.frame)
        if validator.failed:
            log.warning(
                "table %r: batch %d failed the gate; pull stopped", table, validator.batches
            )
            break
    if not quarantine.files:
        quarantine.add(QUARANTINE_SCHEMA.to_frame())
    if schema is None:  # not even an empty batch: nothing was extracted
        schema = TableSchema(table=table, columns={})
    counts["duplicates"] += rows.drop_superseded(primary_key)
    final = _final_schema(schema, stored, changes)
    report = validator.finish(rows.height, rows.column_parts)
    return StagedTable(
        table=table,
        rows=rows,
        quarantine=quarantine,
        schema=final,
        report=report,
        rows_in=counts["rows_in"],
        values_quarantined=counts["values"],
        rows_quarantined=counts["held"],
        duplicates_removed=counts["duplicates"],
        batches=validator.batches,
        changes=changes,
    )


def _final_schema(
    schema: TableSchema, stored: TableSchema | None, changes: list[str]
) -> TableSchema:
    """One version step over the stored schema, however many batches changed it."""
    if stored is not None and schema.same_columns(stored):
        return replace(schema, version=stored.version, changes=())
    return replace(schema, version=(stored.version if stored else 0) + 1, changes=tuple(changes))
