"""The featurepipe exception tree.

Every error a user can see derives from ``FeaturepipeError`` and names the
file, table, row or column concerned and what to do about it::

    FeaturepipeError
    ├── ConfigError                 featurepipe.toml is missing, unreadable or invalid
    ├── SourceError                 a source cannot be read (missing file, bad format)
    ├── StateError                  a source's cursor or manifest state cannot be read or written
    ├── SchemaError                 a column cannot be typed as declared
    ├── ValidationFailed            a Great Expectations suite failed: the gate is shut
    ├── DestinationError            the destination cannot be read or written
    ├── FeatureError                features cannot be built from the tables given
    ├── ModelError                  a model cannot be trained, saved or loaded
    ├── TrackingError               MLflow cannot be reached or refused a call
    └── FlowError                   a notebook flow cannot start
        ├── StepFailed              a notebook of the flow raised; carries step and cell
        │   ├── GateFailed          ... with ValidationFailed: a validation gate shut
        │   ├── StepTimedOut        ... it ran longer than its timeout and was stopped
        │   └── KernelDied          ... its Jupyter kernel died (killed, out of memory)
        └── MetricBelowThreshold    the flow finished but a metric missed `--fail-under`
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "DestinationError",
    "ExpectationFailure",
    "FeatureError",
    "FeaturepipeError",
    "FlowError",
    "GateFailed",
    "KernelDied",
    "MetricBelowThreshold",
    "ModelError",
    "SchemaError",
    "SourceError",
    "StateError",
    "StepFailed",
    "StepTimedOut",
    "TrackingError",
    "ValidationFailed",
]


class FeaturepipeError(Exception):
    """Root of every error featurepipe raises on purpose."""


class ConfigError(FeaturepipeError):
    """``featurepipe.toml`` is missing, unreadable or invalid."""


class SourceError(FeaturepipeError):
    """A source cannot be read."""


class StateError(FeaturepipeError):
    """A source's committed cursor or manifest state cannot be read or written."""


class SchemaError(FeaturepipeError):
    """A column cannot be typed as its hint or contract demands."""


class DestinationError(FeaturepipeError):
    """The destination cannot be read or written."""


class FeatureError(FeaturepipeError):
    """Features cannot be built from the tables given."""


class ModelError(FeaturepipeError):
    """A model cannot be trained, saved or loaded."""


class TrackingError(FeaturepipeError):
    """MLflow cannot be reached or refused a call."""


@dataclass(frozen=True)
class ExpectationFailure:
    """One failed expectation of a suite, in terms a person can act on."""

    table: str
    expectation: str
    column: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    examples: tuple[Any, ...] = ()
    observed_value: Any = None

    def describe(self) -> str:
        """One line: table, column, expectation and what was found."""
        where = f"{self.table}.{self.column}" if self.column else self.table
        args = {k: v for k, v in self.kwargs.items() if k not in ("column", "batch_id")}
        text = f"{where}: {self.expectation}"
        if args:
            text += "(" + ", ".join(f"{k}={v!r}" for k, v in sorted(args.items())) + ")"
        if self.unexpected_count is not None:
            text += f" failed for {self.unexpected_count} rows"
            if self.unexpected_percent is not None:
                text += f" ({self.unexpected_percent:.3g}%)"
            if self.examples:
                text += ", e.g. " + ", ".join(repr(v) for v in self.examples[:5])
        elif self.observed_value is not None:
            text += f" failed; observed {self.observed_value!r}"
        else:
            text += " failed"
        return text


class ValidationFailed(FeaturepipeError):
    """One or more Great Expectations suites failed; nothing was loaded.

    Carries every failure as a structured ``ExpectationFailure`` while its
    message stays bounded, whatever the number of failures.
    """

    max_listed = 10

    def __init__(self, failures: Sequence[ExpectationFailure]) -> None:
        self.failures = list(failures)
        super().__init__(self._message())

    @property
    def tables(self) -> list[str]:
        """Names of the tables whose suite failed, in order of first failure."""
        return list(dict.fromkeys(f.table for f in self.failures))

    def _message(self) -> str:
        n = len(self.failures)
        lines = [
            f"validation failed for table(s) {', '.join(self.tables)}: "
            f"{n} expectation(s) not met, nothing was loaded."
        ]
        lines += [f"  - {f.describe()}" for f in self.failures[: self.max_listed]]
        if n > self.max_listed:
            lines.append(f"  ... and {n - self.max_listed} more")
        lines.append(
            "Fix the source data, or the suite in expectations/<table>.json if the data is right."
        )
        return "\n".join(lines)


class FlowError(FeaturepipeError):
    """A notebook flow cannot start or continue."""


class StepFailed(FlowError):
    """A notebook of the flow raised an exception.

    Attributes:
        step: notebook name, e.g. ``01_ingest``.
        run_id: the flow run id (folder under ``runs/``).
        notebook: path of the executed notebook, written with the error in it.
        cell_index: index of the failing cell, when known.
        error_name: the exception class raised inside the notebook.
        error_value: the exception message raised inside the notebook.
    """

    hint = "open the executed notebook, fix the cell, then `featurepipe run --from {step}`."

    @property
    def kernel_log(self) -> str:
        """The kernel's log, beside the executed notebook: ``<run_dir>/<step>.kernel.log``."""
        return str(Path(self.notebook).with_name(f"{self.step}.kernel.log"))

    def __init__(
        self,
        step: str,
        run_id: str,
        notebook: str,
        *,
        cell_index: int | None = None,
        error_name: str = "",
        error_value: str = "",
    ) -> None:
        self.step = step
        self.run_id = run_id
        self.notebook = notebook
        self.cell_index = cell_index
        self.error_name = error_name
        self.error_value = error_value
        cell = f" in cell {cell_index}" if cell_index is not None else ""
        super().__init__(
            f"step {step} failed{cell}: {error_name}: {error_value}\n"
            f"The executed notebook with the error is at {notebook}\n"
            f"Hint: {self.hint.format(step=step, kernel_log=self.kernel_log)}"
        )


class GateFailed(StepFailed):
    """A validation gate (``ValidationFailed``) stopped a step; nothing was loaded."""

    hint = (
        "fix the data named above, or the suite in expectations/ if the data is right, "
        "then `featurepipe run --from {step}`."
    )


class StepTimedOut(StepFailed):
    """A step ran longer than its timeout and its kernel was stopped."""

    hint = (
        "raise `timeout` in [flow] or [flow.steps.{step}] of featurepipe.toml, "
        "or make the step faster (fewer rows: a parameter such as months)."
    )


class KernelDied(StepFailed):
    """The Jupyter kernel of a step died (killed, out of memory, a crash in native code)."""

    hint = (
        "the kernel process ended abruptly; check memory (dmesg, `free -m`) and the kernel "
        "log {kernel_log}, then `featurepipe run --from {step}`."
    )


class MetricBelowThreshold(FlowError):
    """The flow finished, but a metric is below its ``--fail-under`` threshold.

    Attributes:
        misses: metric name to (value or None when no step logged it, threshold).
        losses: the names among ``misses`` for which lower is better (they need <= threshold).
    """

    def __init__(
        self,
        run_id: str,
        misses: dict[str, tuple[float | None, float]],
        losses: Collection[str] = (),
    ) -> None:
        self.run_id = run_id
        self.misses = misses
        self.losses = set(losses)
        lines = [f"flow {run_id}: {len(misses)} metric(s) worse than the threshold:"]
        for name, (value, threshold) in misses.items():
            found = "not logged by any step" if value is None else f"{value:.6g}"
            bound = "<=" if name in self.losses else ">="
            lines.append(f"  - {name} = {found}, needs {bound} {threshold:g}")
        lines.append("Hint: compare with a good run: `featurepipe runs compare A B`.")
        super().__init__("\n".join(lines))
