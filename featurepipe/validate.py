"""Run each table's Great Expectations suite from ``expectations/`` and gate on the result.

Great Expectations is imported only when a suite runs (the import alone takes seconds).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from .errors import ConfigError, ExpectationFailure, ValidationFailed

__all__ = ["ValidationReport", "require_valid", "suite_path", "validate_tables"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of one table's suite."""

    table: str
    suite: str
    success: bool
    evaluated: int
    failures: list[ExpectationFailure] = field(default_factory=list)

    @property
    def passed(self) -> int:
        """Expectations met."""
        return self.evaluated - len(self.failures)


def suite_path(expectations_dir: str | Path, table: str) -> Path:
    """Where the suite of ``table`` lives: ``expectations/<table>.json``."""
    return Path(expectations_dir) / f"{table}.json"


def _read_suite(path: Path, table: str) -> dict[str, Any]:
    try:
        suite: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"table {table!r}: no expectation suite at {path}; every loaded table needs one. "
            'Write a GX 1.x suite JSON there ({"name": ..., "expectations": [...]}).'
        ) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(suite.get("expectations"), list):
        raise ConfigError(f"{path}: a suite needs an 'expectations' list")
    return suite


def _raised(info: dict[str, Any]) -> str | None:
    """The message of an exception GX caught while checking, if any.

    GX reports it either flat or keyed by the metric that raised it.
    """
    for entry in (info, *(v for v in info.values() if isinstance(v, dict))):
        if entry.get("raised_exception"):
            message = str(entry.get("exception_message") or "exception").strip()
            return message.splitlines()[0][:200]
    return None


def _failure(table: str, result: Any) -> ExpectationFailure:
    config = result.expectation_config
    details = result.result or {}
    examples = tuple(details.get("partial_unexpected_list") or ())
    observed = details.get("observed_value")
    error = _raised(result.exception_info or {})
    if error is not None:  # the check could not run, e.g. text in a numeric check
        observed = f"error: {error}"
    return ExpectationFailure(
        table=table,
        expectation=config.type,
        column=config.kwargs.get("column"),
        kwargs=dict(config.kwargs),
        unexpected_count=details.get("unexpected_count"),
        unexpected_percent=details.get("unexpected_percent"),
        examples=examples,
        observed_value=observed,
    )


def validate_tables(
    frames: Mapping[str, pl.DataFrame], expectations_dir: str | Path
) -> list[ValidationReport]:
    """Validate every frame with its suite; all suites run even when one fails.

    Args:
        frames: table name to the frame about to be loaded.
        expectations_dir: folder holding ``<table>.json`` suites.

    Returns:
        One report per table, in the order given.

    Raises:
        ConfigError: a suite file is missing or malformed.
    """
    suites = {t: _read_suite(suite_path(expectations_dir, t), t) for t in frames}
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # seconds to import: only when validating
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("featurepipe")
    reports = []
    for table, frame in frames.items():
        spec = suites[table]
        suite = context.suites.add(
            gx.ExpectationSuite(name=spec.get("name", table), expectations=spec["expectations"])
        )
        batch = (
            source.add_dataframe_asset(table)
            .add_batch_definition_whole_dataframe("all")
            .get_batch(batch_parameters={"dataframe": frame.to_pandas()})
        )
        result = batch.validate(suite, result_format="SUMMARY")
        failures = [_failure(table, r) for r in result.results if not r.success]
        reports.append(
            ValidationReport(
                table=table,
                suite=suite.name,
                success=bool(result.success),
                evaluated=len(result.results),
                failures=failures,
            )
        )
        log.info(
            "validated %s: %d/%d expectations met", table, reports[-1].passed, len(result.results)
        )
    return reports


def require_valid(reports: Sequence[ValidationReport]) -> None:
    """Shut the gate: raise if any suite failed.

    Raises:
        ValidationFailed: with every failed expectation of every table.
    """
    failures = [f for r in reports for f in r.failures]
    if failures or not all(r.success for r in reports):
        raise ValidationFailed(failures)
