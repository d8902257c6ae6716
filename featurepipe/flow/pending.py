"""Run records of flow runs that reused every step, kept in ``runs/`` until MLflow is opened.

A flow run with nothing to execute must be quick (the goal is 3 s), and importing MLflow
alone costs seconds. So such a run writes its whole run record (the parent run and one
reused child run per step, as the flow would log them) to
``runs/<run_id>/mlflow-pending.json`` and opens no MLflow store. The next flow run that
executes a step, ``featurepipe runs`` and ``featurepipe ui`` log every pending record
with its original start and end times, then delete the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config

__all__ = ["PENDING_FILE", "ChildRecord", "PendingRecord", "log_pending", "write_pending"]

PENDING_FILE = "mlflow-pending.json"


@dataclass
class ChildRecord:
    """A reused step's child run, as ``run_flow`` would create it."""

    name: str
    tags: dict[str, str]
    params: dict[str, Any]
    start_ms: int = 0


@dataclass
class PendingRecord:
    """A flow's parent run and its children, not yet logged to MLflow."""

    run_id: str
    start_ms: int
    end_ms: int
    failed: bool
    tags: dict[str, str]
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    children: list[ChildRecord] = field(default_factory=list)


def write_pending(run_dir: Path, record: PendingRecord) -> Path:
    """Write ``<run_dir>/mlflow-pending.json`` atomically; returns its path."""
    path = run_dir / PENDING_FILE
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".pending-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(asdict(record), f, indent=1, default=str)
    os.replace(tmp, path)
    return path


def _read(path: Path) -> PendingRecord:
    data = json.loads(path.read_text(encoding="utf-8"))
    children = [ChildRecord(**c) for c in data.pop("children", [])]
    return PendingRecord(**data, children=children)


def log_pending(config: Config, experiment_id: str | None = None) -> list[str]:
    """Log every pending run record of the project to MLflow, oldest first.

    Each record is claimed first, by renaming its file to one named after this process
    (:func:`_claim`), so two processes logging at once (a flow run and ``featurepipe
    runs``) never log the same record twice. A record whose flow run MLflow already holds
    (an earlier attempt stopped half way) is not logged twice either. Each file is deleted
    once it is logged; on an error the claimed file is put back, still pending.

    Args:
        config: the project.
        experiment_id: the project's experiment, when the caller has configured MLflow
            already (a flow run); found (or created) otherwise.

    Returns:
        The flow run ids logged.

    Raises:
        TrackingError: the store cannot be reached; the records stay pending.
    """
    runs_dir = config.path(config.flow.runs_dir)
    files = sorted(runs_dir.glob(f"*/{PENDING_FILE}")) + sorted(runs_dir.glob(f"*/{_CLAIMED}*"))
    if not files:
        return []
    from .. import tracking

    experiment_id = experiment_id or tracking.configure(
        config.tracking_uri, config.tracking.experiment, config.path("mlruns")
    )
    logged = []
    for path in files:
        claimed = _claim(path)
        if claimed is None:
            continue  # another process is logging it, or has logged it
        try:
            record = _read(claimed)
            if not tracking.flow_runs(experiment_id, limit=1, flow_run=record.run_id):
                _replay(experiment_id, record, claimed.parent)
                logged.append(record.run_id)
        except BaseException:
            os.replace(claimed, claimed.with_name(PENDING_FILE))
            raise
        claimed.unlink()
    return logged


_CLAIMED = f".{PENDING_FILE}.claimed-"


def _claim(path: Path) -> Path | None:
    """Rename a pending record to this process's claim on it; ``None`` if another process
    holds it (or took it first). A claim whose process is gone (killed while logging) is
    taken over."""
    if path.name != PENDING_FILE:
        owner = int(path.name.removeprefix(_CLAIMED))
        if owner == os.getpid() or _alive(owner):
            return None
    claimed = path.with_name(f"{_CLAIMED}{os.getpid()}")
    try:
        os.rename(path, claimed)  # atomic: of two processes, one gets the file
    except FileNotFoundError:
        return None
    return claimed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _replay(experiment_id: str, record: PendingRecord, run_dir: Path) -> None:
    from .. import tracking

    parent = tracking.start_flow_run(
        experiment_id,
        f"flow {record.run_id}",
        params=record.params,
        tags=record.tags,
        start_ms=record.start_ms,
    )
    requirements = run_dir / "requirements.txt"
    if requirements.is_file():
        tracking.log_text(parent, requirements.read_text(encoding="utf-8"), requirements.name)
    started = record.start_ms
    for child in record.children:
        started = max(child.start_ms, started + 1)  # strictly increasing: MLflow orders by it
        run = tracking.create_step_run(
            experiment_id,
            parent,
            child.name,
            record.run_id,
            tags=child.tags,
            start_ms=started,
        )
        tracking.log_run(run, params=child.params)
        tracking.end_run(run, end_ms=record.end_ms)
    if record.metrics:
        tracking.log_run(parent, metrics=record.metrics)
    tracking.end_run(parent, failed=record.failed, end_ms=record.end_ms)
