"""The flow's cache: which successful step run a fingerprint and its data versions can reuse.

``runs/cache.json`` maps a step fingerprint to the run that last finished it, with the
versions of the data it read and wrote. A step is up to date when an entry exists for
its fingerprint, every input still has the version it had, and every table it wrote
is still at the version it left (so a table changed or deleted since forces a rerun).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from .dag import Step
from .fingerprint import FileHashes, probe_data, step_fingerprint

__all__ = ["CACHE_FILE", "CacheEntry", "StepCache", "StepDecision", "decide_step"]

CACHE_FILE = "cache.json"
_FORMAT = 1


@dataclass(frozen=True)
class CacheEntry:
    """A successful step run that later runs may reuse."""

    step: str
    run_id: str
    mlflow_run_id: str
    finished_at: str
    reads: dict[str, str | None] = field(default_factory=dict)
    writes: dict[str, str | None] = field(default_factory=dict)
    parts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


class StepCache:
    """``runs/cache.json``, read once per flow run and rewritten atomically after each step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data: dict[str, Any] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                data = {}  # a damaged cache only costs a rerun
        if data.get("format") != _FORMAT:
            data = {}
        self.entries: dict[str, CacheEntry] = {
            key: CacheEntry(**value) for key, value in data.get("steps", {}).items()
        }
        self.hashes = FileHashes(data.get("file_hashes", {}))

    def lookup(
        self, config: Config, fingerprint: str, parts: Mapping[str, Any] | None = None
    ) -> tuple[CacheEntry | None, str]:
        """The reusable entry for a fingerprint, or None and the reason it cannot be reused."""
        entry = self.entries.get(fingerprint)
        if entry is None:
            return None, self._what_changed(parts or {})
        for label, recorded in (("input", entry.reads), ("output", entry.writes)):
            current = probe_data(config, recorded, self.hashes)
            for key, version in recorded.items():
                if version is None or current[key] != version:
                    return None, f"{label} {key} changed ({version} -> {current[key]})"
        return entry, "up to date"

    def _what_changed(self, parts: Mapping[str, Any]) -> str:
        step = parts.get("step")
        earlier = [e for e in self.entries.values() if e.step == step and e.parts]
        if not earlier:
            return "never ran successfully"
        last = max(earlier, key=lambda e: e.finished_at)
        changed = [k for k, v in parts.items() if last.parts.get(k) != v]
        return f"{', '.join(changed) or 'fingerprint'} changed since run {last.run_id}"

    def store(self, fingerprint: str, entry: CacheEntry) -> None:
        """Remember a successful step run and write the cache file."""
        self.entries[fingerprint] = entry
        self.save()

    def save(self) -> None:
        """Write the cache file atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": _FORMAT,
            "steps": {key: asdict(value) for key, value in self.entries.items()},
            "file_hashes": self.hashes.known,
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".cache-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def probe(self, config: Config, names: Mapping[str, Any]) -> dict[str, str | None]:
        """Current versions of inputs (using this cache's remembered file hashes)."""
        return probe_data(config, names, self.hashes)


@dataclass(frozen=True)
class StepDecision:
    """Whether a step runs or reuses an earlier run, and why."""

    step: str
    fingerprint: str
    parts: dict[str, Any]
    entry: CacheEntry | None
    reason: str

    @property
    def runs(self) -> bool:
        """True when the step must run."""
        return self.entry is None


def decide_step(
    config: Config,
    step: Step,
    cache: StepCache,
    *,
    ran: Collection[str],
    start: str | None = None,
    force: bool = False,
) -> StepDecision:
    """Decide whether ``step`` runs, given the steps that ``ran`` earlier in this flow run.

    A step runs when forced (``--force``, or it is the ``--from`` step), when an upstream
    step ran in this flow run, or when the cache holds no valid entry for it.
    """
    fingerprint, parts = step_fingerprint(
        config, step=step.name, notebook=step.notebook, parameters=step.effective
    )
    entry: CacheEntry | None = None
    upstream_ran = sorted(set(step.upstream).intersection(ran))
    if force:
        reason = "forced (--force)"
    elif step.name == start:
        reason = "forced (--from)"
    elif upstream_ran:
        reason = f"upstream {', '.join(upstream_ran)} ran"
    else:
        entry, reason = cache.lookup(config, fingerprint, parts)
    return StepDecision(step.name, fingerprint, parts, entry, reason)
