"""Run each table's Great Expectations suite from ``expectations/`` and gate on the result.

Great Expectations is imported only when a suite runs (the import alone takes seconds).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from .errors import ConfigError, ExpectationFailure, ValidationFailed

__all__ = ["BatchValidator", "ValidationReport", "require_valid", "suite_path", "validate_tables"]

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
    source = _gx_source()
    reports = []
    for table, frame in frames.items():
        spec = suites[table]
        results = _run_suite(source, table, spec.get("name", table), spec["expectations"], frame)
        failures = [_failure(table, r) for r in results if not r.success]
        reports.append(
            ValidationReport(
                table=table,
                suite=spec.get("name", table),
                success=not failures,
                evaluated=len(results),
                failures=failures,
            )
        )
        log.info("validated %s: %d/%d expectations met", table, reports[-1].passed, len(results))
    return reports


def _gx_source() -> Any:
    """A pandas data source in a new ephemeral GX context (GX imported here: seconds)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # seconds to import: only when validating
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context.data_sources.add_pandas("featurepipe")


def _run_suite(
    source: Any, asset: str, name: str, expectations: list[dict[str, Any]], frame: pl.DataFrame
) -> list[Any]:
    """The GX results of ``expectations`` on ``frame`` (one per expectation, in order)."""
    import great_expectations as gx

    context = source.data_context
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    try:
        batch = (
            source.add_dataframe_asset(asset)
            .add_batch_definition_whole_dataframe("all")
            .get_batch(batch_parameters={"dataframe": frame.to_pandas()})
        )
        result = batch.validate(suite, result_format="SUMMARY")
    finally:
        context.suites.delete(name)
        source.delete_asset(asset)
    return list(result.results)


def require_valid(reports: Sequence[ValidationReport]) -> None:
    """Shut the gate: raise if any suite failed.

    Raises:
        ValidationFailed: with every failed expectation of every table.
    """
    failures = [f for r in reports for f in r.failures]
    if failures or not all(r.success for r in reports):
        raise ValidationFailed(failures)


ColumnParts = Callable[[list[str]], Iterable[tuple[pl.DataFrame, pl.Series]]]
"""Columns of a whole table in parts, each with every row of its values, and the rows'
places in the table."""
_PLACE = "_fp_place"
# Expectations a batch cannot decide alone: checked once over the staged table.
_ROW_COUNT = ("expect_table_row_count_to_be_between", "expect_table_row_count_to_equal")
_UNIQUE = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")
# Expectations each batch decides for its own rows: per-row checks and the column set.
_PER_BATCH = (
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
    "expect_table_column_count_to_equal",
    "expect_table_column_count_to_be_between",
    "expect_column_to_exist",
    "expect_select_column_values_to_be_unique_within_record",
    "expect_multicolumn_sum_to_equal",
)
_PER_ROW_PREFIXES = ("expect_column_values_to_", "expect_column_pair_values_")


def _per_row(kind: str) -> bool:
    return kind in _PER_BATCH or (kind.startswith(_PER_ROW_PREFIXES) and kind not in _UNIQUE)


class BatchValidator:
    """A table's suite checked batch by batch, for a table too large to validate whole.

    Per-row expectations run on each batch with GX and their counts add up (``mostly``
    is decided on the totals); row counts and uniqueness are decided on the whole staged
    table by :meth:`finish`. Other whole-table expectations (means, sets of distinct
    values …) cannot be streamed and are refused up front.

    Args:
        table: the table.
        expectations_dir: folder holding ``<table>.json`` suites.
        whole: the table comes as one batch: every expectation runs on it with GX, as
            :func:`validate_tables` runs them.

    Raises:
        ConfigError: the suite is missing or malformed, or holds an expectation that
            needs the whole table at once (and the table comes in batches).
    """

    max_examples = 20

    def __init__(self, table: str, expectations_dir: str | Path, *, whole: bool = False) -> None:
        path = suite_path(expectations_dir, table)
        spec = _read_suite(path, table)
        self.table = table
        self.suite = str(spec.get("name", table))
        self.expectations: list[dict[str, Any]] = spec["expectations"]
        self.whole = whole
        statistics = [
            e["type"]
            for e in self.expectations
            if not _per_row(e["type"]) and e["type"] not in (*_ROW_COUNT, *_UNIQUE)
        ]
        if statistics and not whole:
            raise ConfigError(
                f"{path}: {sorted(set(statistics))} need the whole table at once, so table "
                f"{table!r} cannot be validated batch by batch; ingest it whole (not streamed) "
                "or use per-row expectations, row counts and uniqueness checks."
            )
        self._batch = [i for i, e in enumerate(self.expectations) if whole or _per_row(e["type"])]
        self._failed: dict[int, ExpectationFailure] = {}
        self._counts: dict[int, list[int]] = {}  # unexpected, non-missing
        self._source: Any = None
        self.batches = 0

    @property
    def failed(self) -> bool:
        """A batch already failed an expectation for good (no ``mostly`` to rescue it)."""
        return any("mostly" not in self.expectations[i].get("kwargs", {}) for i in self._failed)

    def check(self, frame: pl.DataFrame) -> None:
        """Run the per-row expectations on one batch and add up their results."""
        self.batches += 1
        if not self._batch:
            return
        if self._source is None:
            self._source = _gx_source()
        expectations = [self.expectations[i] for i in self._batch]
        results = _run_suite(self._source, self.table, self.suite, expectations, frame)
        for index, result in zip(self._batch, results, strict=True):
            details = result.result or {}
            if "unexpected_count" in details:
                counts = self._counts.setdefault(index, [0, 0])
                counts[0] += int(details.get("unexpected_count") or 0)
                counts[1] += int(details.get("element_count") or 0) - int(
                    details.get("missing_count") or 0
                )
            if not result.success or (index in self._failed and details.get("unexpected_count")):
                self._add_failure(index, _failure(self.table, result))

    def _add_failure(self, index: int, failure: ExpectationFailure) -> None:
        seen = self._failed.get(index)
        if seen is not None:
            examples = (*seen.examples, *failure.examples)[: self.max_examples]
            failure = replace(seen, examples=examples)
        self._failed[index] = failure

    def finish(self, rows: int, parts: ColumnParts) -> ValidationReport:
        """Decide the suite over every batch.

        Args:
            rows: the table's rows (after de-duplication).
            parts: reads the named columns of the whole staged table in parts, each part
                holding every row of its values, with each row's place in the table
                (``StagedRows.column_parts``; a table in memory is one part).

        Returns:
            The report, as :func:`validate_tables` gives it for the whole table.
        """
        failures: dict[int, ExpectationFailure] = {}
        for index, expectation in enumerate(self.expectations):
            kind, kwargs = expectation["type"], dict(expectation.get("kwargs", {}))
            failure = None
            if self.whole:  # GX decided every expectation on the one batch
                failure = self._failed.get(index)
            elif kind in _ROW_COUNT:
                failure = self._row_count(kind, kwargs, rows)
            elif kind in _UNIQUE:
                failure = self._unique(kind, kwargs, parts)
            elif index in self._failed:
                failure = self._totals(index, kwargs)
            if failure is not None:
                failures[index] = failure
        report = ValidationReport(
            table=self.table,
            suite=self.suite,
            success=not failures,
            evaluated=len(self.expectations),
            failures=[failures[i] for i in sorted(failures)],
        )
        log.info(
            "validated %s in %d batches: %d/%d expectations met",
            self.table, self.batches, report.passed, report.evaluated,
        )  # fmt: skip
        return report

    def _totals(self, index: int, kwargs: dict[str, Any]) -> ExpectationFailure | None:
        failure = self._failed[index]
        counts = self._counts.get(index)
        if counts is None:  # no counts (a column-set check): the batch's verdict stands
            return failure
        unexpected, present = counts
        mostly = kwargs.get("mostly")
        if mostly is not None and present and (present - unexpected) / present >= float(mostly):
            return None  # some batches missed, the whole table does not
        percent = 100 * unexpected / present if present else None
        return replace(failure, unexpected_count=unexpected, unexpected_percent=percent)

    def _row_count(self, kind: str, kwargs: dict[str, Any], rows: int) -> ExpectationFailure | None:
        if kind == "expect_table_row_count_to_equal":
            ok = rows == kwargs.get("value")
        else:
            low, high = kwargs.get("min_value"), kwargs.get("max_value")
            ok = (low is None or rows >= low) and (high is None or rows <= high)
        if ok:
            return None
        return ExpectationFailure(self.table, kind, None, kwargs, observed_value=rows)

    def _unique(
        self, kind: str, kwargs: dict[str, Any], parts: ColumnParts
    ) -> ExpectationFailure | None:
        names = [kwargs["column"]] if "column" in kwargs else list(kwargs["column_list"])
        if kind == "expect_column_values_to_be_unique":
            counted = pl.col(names[0]).is_not_null()
        else:  # GX's default: a row with every value missing is ignored
            counted = pl.any_horizontal(pl.col(names).is_not_null())
        present = repeated = 0
        examples = []
        for values, places in parts(names):
            frame = values.select(names).with_columns(places.alias(_PLACE)).filter(counted)
            frame = frame.filter(pl.struct(names).is_duplicated())
            present += values.select(counted.sum()).item()
            repeated += frame.height
            examples.append(frame.sort(_PLACE).head(self.max_examples))
        mostly = float(kwargs.get("mostly", 1.0))
        if not repeated or (present and (present - repeated) / present >= mostly):
            return None
        first = pl.concat(examples).sort(_PLACE).head(self.max_examples).drop(_PLACE)
        return ExpectationFailure(
            table=self.table,
            expectation=kind,
            column=kwargs.get("column"),
            kwargs=kwargs,
            unexpected_count=repeated,
            unexpected_percent=100 * repeated / present,
            examples=tuple(first.to_series() if len(names) == 1 else first.rows()),
        )
