"""List recent flow runs and show what differs between two of them (from MLflow)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import tracking
from ..config import Config
from ..errors import FlowError
from .pending import log_pending

__all__ = ["Difference", "RunComparison", "compare_runs", "find_run", "list_runs"]

# Metrics shown first in `featurepipe runs`, when a run has them.
KEY_METRICS = ("test_roc_auc", "test_pr_auc")


def _experiment(config: Config) -> str | None:
    log_pending(config)  # runs that reused every step wrote their record to runs/ only
    return tracking.find_experiment(config.tracking_uri, config.tracking.experiment)


def list_runs(config: Config, limit: int = 20) -> list[tracking.RunInfo]:
    """The most recent flow runs, newest first (none when nothing has run yet)."""
    experiment = _experiment(config)
    return [] if experiment is None else tracking.flow_runs(experiment, limit=limit)


def find_run(config: Config, ref: str) -> tracking.RunInfo:
    """A flow run by its id (``runs/<id>``), a unique prefix of it, or its MLflow run id.

    Raises:
        FlowError: no run or more than one run matches.
    """
    experiment = _experiment(config)
    runs = [] if experiment is None else tracking.flow_runs(experiment, limit=1000)
    exact = [r for r in runs if ref in (r.flow_run, r.run_id)]
    found = exact or [r for r in runs if r.flow_run.startswith(ref) or r.run_id.startswith(ref)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise FlowError(
            f"no flow run {ref!r} in experiment {config.tracking.experiment!r} at "
            f"{config.tracking_uri}; `featurepipe runs` lists them."
        )
    names = ", ".join(r.flow_run for r in found[:5])
    raise FlowError(f"{ref!r} matches {len(found)} flow runs ({names}); give more characters.")


@dataclass(frozen=True)
class Difference:
    """One key whose value differs between two runs (None: absent in that run)."""

    kind: str
    key: str
    a: str | None
    b: str | None


@dataclass
class RunComparison:
    """What differs between run ``a`` and run ``b``."""

    a: tracking.RunInfo
    b: tracking.RunInfo
    differences: list[Difference] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Difference]:
        """The differences of one kind: parameter, data, code, metric."""
        return [d for d in self.differences if d.kind == kind]


def _kind(key: str) -> str:
    if key.startswith(("data.", "table_version.")):
        return "data"
    if key.startswith(("fingerprint.", "status.")):
        return "step"
    return "parameter"


def _fmt(value: float | None) -> str | None:
    return None if value is None else f"{value:.6g}"


def compare_runs(config: Config, a: str, b: str) -> RunComparison:
    """Compare two flow runs: parameters, data versions, code and metrics that differ.

    Raises:
        FlowError: a run cannot be found.
    """
    run_a, run_b = find_run(config, a), find_run(config, b)
    comparison = RunComparison(run_a, run_b)
    for key in sorted(set(run_a.params) | set(run_b.params)):
        va, vb = run_a.params.get(key), run_b.params.get(key)
        if va != vb and key != "steps":
            comparison.differences.append(Difference(_kind(key), key, va, vb))
    for tag in ("mlflow.source.git.commit", "featurepipe.git.dirty", "featurepipe.config_hash"):
        va, vb = run_a.tags.get(tag), run_b.tags.get(tag)
        if va != vb:
            comparison.differences.append(Difference("code", tag, va, vb))
    for key in sorted(set(run_a.metrics) | set(run_b.metrics)):
        ma, mb = run_a.metrics.get(key), run_b.metrics.get(key)
        if ma != mb:
            comparison.differences.append(Difference("metric", key, _fmt(ma), _fmt(mb)))
    return comparison
