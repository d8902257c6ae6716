"""Move queued webhook events into NDJSON batch files in a bucket, and read them back as a table.

Layout: ``{bucket}/{source}/{YYYYmmddTHHMMSS.nanoseconds}Z-{random}.ndjson``, named by the UTC
time the file appears, one event per line: ``{"webhook_id": …, "received_at": …,
"payload": {…}}``. A batch file appears whole or not at all (a local folder: temp file,
fsync, rename; an object store through fsspec: one PUT), and queue entries are acknowledged
only after their file is durable.

Names sort by time, so the reader keeps a watermark instead of a list of every file ever
read: files named more than ``late_seconds`` before the newest loaded one count as loaded,
and only the names inside that window are remembered (see ``LoadWindow``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from ..config import PUSH_RECEIVED_AT_FORMAT, PushSourceConfig
from ..errors import SourceError
from .base import Batch, BatchReader, SourceBase
from .push_queue import EventQueue, QueuedEvent

__all__ = [
    "LINEAGE_COLUMNS",
    "RECEIVED_AT_FORMAT",
    "BatchFlusher",
    "LoadWindow",
    "PushSource",
    "batch_lines",
    "batch_name",
    "extract_push",
    "list_batches",
    "name_time_ns",
    "write_batch",
]

log = logging.getLogger("featurepipe.push")

LINEAGE_COLUMNS = ("webhook_id", "received_at")
RECEIVED_AT_FORMAT = PUSH_RECEIVED_AT_FORMAT
BATCH_SUFFIX = ".ndjson"
RECENT_IDS = 20_000  # webhook ids kept in the state to drop duplicates across loads
_NAME_TIME = re.compile(r"^(\d{8}T\d{6})\.(\d{9})Z")


def _is_remote(bucket: str) -> bool:
    return "://" in bucket and not bucket.startswith("file://")


def _remote_fs(bucket: str, options: Mapping[str, str] | None) -> tuple[Any, str]:
    """The fsspec filesystem of a bucket URL and the bucket's root path in it."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(bucket, **dict(options or {}))
    except ImportError as exc:  # e.g. s3:// without s3fs
        raise SourceError(
            f"push bucket {bucket}: {exc}; install the filesystem's package, for S3: "
            "pip install 'featurepipe[s3]'"
        ) from exc
    return fs, str(root).rstrip("/")


def _local(bucket: str) -> Path:
    return Path(bucket.removeprefix("file://"))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def batch_lines(events: Sequence[QueuedEvent]) -> bytes:
    """The NDJSON text of a batch: one line per event, payload re-serialised on one line."""
    lines = [
        json.dumps(
            {
                "webhook_id": e.webhook_id,
                "received_at": e.received_at.isoformat(timespec="microseconds"),
                "payload": json.loads(e.body),
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for e in events
    ]
    return ("\n".join(lines) + "\n").encode()


def _stamp(ns: int) -> str:
    """``YYYYmmddTHHMMSS.nnnnnnnnnZ`` of a UTC time in nanoseconds: sorts as the time does."""
    seconds = datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{seconds}.{ns % 10**9:09d}Z"


def batch_name(now_ns: int | None = None) -> str:
    """A batch file name: the UTC time (default: now) to the nanosecond, then a random part."""
    stamp = _stamp(time.time_ns() if now_ns is None else now_ns)
    return f"{stamp}-{uuid.uuid4().hex[:12]}{BATCH_SUFFIX}"


def name_time_ns(name: str) -> int | None:
    """The time in a batch file's name, in nanoseconds; None for a name not made by
    ``batch_name``."""
    match = _NAME_TIME.match(name)
    if match is None:
        return None
    at = datetime.strptime(match[1], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return int(at.timestamp()) * 10**9 + int(match[2])


def write_batch(
    bucket: str,
    source: str,
    events: Sequence[QueuedEvent],
    storage_options: Mapping[str, str] | None = None,
) -> str:
    """Write one batch file atomically and durably; returns its name.

    The name is taken as late as possible, right before the file becomes visible, so
    names sort in the order files appear (the reader's watermark relies on it).

    Raises:
        SourceError: the bucket cannot be written.
    """
    data = batch_lines(events)
    try:
        if _is_remote(bucket):
            fs, root = _remote_fs(bucket, storage_options)
            name = batch_name()
            fs.pipe_file(f"{root}/{source}/{name}", data)  # one PUT: whole or absent
            return name
        folder = _local(bucket) / source
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{uuid.uuid4().hex}.tmp"
        with open(temp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        name = batch_name()
        os.replace(temp, folder / name)
        _fsync_dir(folder)
    except OSError as exc:
        raise SourceError(f"push bucket {bucket}/{source}: cannot write a batch: {exc}") from exc
    return name


def list_batches(
    bucket: str, source: str, storage_options: Mapping[str, str] | None = None
) -> list[str]:
    """Names of the complete batch files of ``source``, oldest first."""
    if _is_remote(bucket):
        fs, root = _remote_fs(bucket, storage_options)
        fs.invalidate_cache()  # a listing cached earlier would miss the newest batches
        folder = f"{root}/{source}"
        if not fs.exists(folder):
            return []
        names = [p.rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)]
    else:
        folder_path = _local(bucket) / source
        names = [p.name for p in folder_path.iterdir()] if folder_path.is_dir() else []
    return sorted(n for n in names if n.endswith(BATCH_SUFFIX) and not n.startswith("."))


def _read_batch(
    bucket: str, source: str, name: str, storage_options: Mapping[str, str] | None = None
) -> bytes:
    if _is_remote(bucket):
        fs, root = _remote_fs(bucket, storage_options)
        return bytes(fs.cat_file(f"{root}/{source}/{name}"))
    return (_local(bucket) / source / name).read_bytes()


class BatchFlusher:
    """A background thread that moves events from the queue to the bucket.

    A source's events are flushed when ``flush_size`` are waiting or the oldest has waited
    ``flush_age_seconds``; ``stop`` flushes whatever is left.
    """

    def __init__(
        self,
        queue: EventQueue,
        bucket: str,
        sources: Iterable[str],
        *,
        flush_size: int = 1000,
        flush_age_seconds: float = 5.0,
        poll_seconds: float = 0.2,
        storage_options: Mapping[str, str] | None = None,
    ):
        self.queue = queue
        self.bucket = bucket
        self.sources = list(sources)
        self.flush_size = flush_size
        self.flush_age_seconds = flush_age_seconds
        self.poll_seconds = poll_seconds
        self.storage_options = dict(storage_options or {})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def flush_source(self, source: str, *, force: bool = False) -> int:
        """Write at most one batch of ``source``; returns the number of events flushed."""
        events = self.queue.take(source, self.flush_size)
        if not events:
            return 0
        age = time.time() - events[0].received_at.timestamp()
        if not force and len(events) < self.flush_size and age < self.flush_age_seconds:
            return 0
        name = write_batch(self.bucket, source, events, self.storage_options)
        self.queue.ack(source, events)
        log.info("%s: flushed %d events to %s", source, len(events), name)
        return len(events)

    def flush_all(self) -> int:
        """Flush every source until its queue is empty; returns the events flushed."""
        total = 0
        for source in self.sources:
            while flushed := self.flush_source(source, force=True):
                total += flushed
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            for source in self.sources:
                try:
                    busy |= self.flush_source(source) > 0
                except Exception:  # keep flushing the other sources; entries stay queued
                    log.exception("%s: flush failed; the events stay in the queue", source)
            if not busy:
                self._stop.wait(self.poll_seconds)

    def start(self) -> None:
        """Start the background thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="push-flusher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then flush what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush_all()


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class LoadWindow:
    """Which batch files of a source are loaded, in state that does not grow with the bucket.

    Names sort by the time the files appeared, so everything named before ``cutoff`` counts
    as loaded, and only the names loaded at or after it are listed. After each load the
    cutoff moves to ``late_seconds`` before the newest loaded name: a batch that appears up
    to ``late_seconds`` after a newer one (a receiver's clock a little behind, a slow upload
    to an object store) is still loaded. One that appears later than that cannot be told
    from a loaded one by its name; ``older`` (how many files were named before the cutoff
    at the last load) makes such a file an error instead of a silent loss. (Deleting old
    batch files lowers that count: a too-late file that appears while as many old ones are
    deleted goes unnoticed.)

    Attributes:
        cutoff: names before this sort before the window ("" at first: no window yet).
        loaded: names at or after ``cutoff`` that were loaded.
        older: files named before ``cutoff`` at the last load.
        late_seconds: how late a batch may appear and still be loaded.
    """

    cutoff: str
    loaded: frozenset[str]
    older: int
    late_seconds: float

    @classmethod
    def from_state(cls, state: Mapping[str, Any], late_seconds: float) -> LoadWindow:
        """The window of a committed state (a list ``manifest`` of an older release too)."""
        return cls(
            cutoff=str(state.get("cutoff", "")),
            loaded=frozenset(state.get("loaded", state.get("manifest", []))),
            older=int(state.get("older", 0)),
            late_seconds=late_seconds,
        )

    def new_names(self, names: Sequence[str], where: str) -> list[str]:
        """The names of ``names`` (the bucket's listing) not loaded yet, oldest first.

        Raises:
            SourceError: files named before the cutoff appeared since the last load.
        """
        before = sum(1 for n in names if n < self.cutoff)
        if before > self.older:
            newest = max(self.loaded, default=self.cutoff)
            raise SourceError(
                f"push source {where}: {before - self.older} batch file(s) named before "
                f"{self.cutoff} appeared after batches up to {newest} were loaded, i.e. more "
                f"than late_seconds ({self.late_seconds:g} s) late: a receiver's clock is "
                "behind or its upload stalled. They are not loaded. Fix that receiver's clock, "
                f"then rename each of them (the most recently modified files named before "
                f"{self.cutoff}) to a name after {newest} ending in .ndjson; the next run loads "
                "them and drops events already loaded by webhook_id."
            )
        return sorted(n for n in names if n >= self.cutoff and n not in self.loaded)

    def advance(self, names: Sequence[str], read: Sequence[str]) -> dict[str, Any]:
        """The state after loading ``read`` out of the listing ``names``."""
        loaded = self.loaded | set(read)
        times = [t for n in loaded if (t := name_time_ns(n)) is not None]
        cutoff = self.cutoff
        if times:
            cutoff = max(cutoff, _stamp(max(times) - int(self.late_seconds * 10**9)))
        return {
            "cutoff": cutoff,
            "loaded": sorted(n for n in loaded if n >= cutoff),
            "older": sum(1 for n in names if n < cutoff),
        }


class PushSource(SourceBase[PushSourceConfig]):
    """The batch files a push source's receiver wrote, new ones only (a ``LoadWindow``).

    Every top-level key of the payloads becomes a text column (nested values as JSON
    text), so typing happens in ``schema`` like for any file; ``webhook_id`` and
    ``received_at`` are kept as lineage columns, and a repeated ``webhook_id`` (an event
    flushed twice after a crash) is dropped.
    """

    kind = "push"
    stage = "beta"
    options = PushSourceConfig
    summary = "signed webhooks (featurepipe serve) → queue → NDJSON batches in a bucket"

    def read(self, state: Mapping[str, Any]) -> BatchReader:
        """Yield one batch per new batch file; return the window and the recent ids."""
        bucket, folder = self.config.bucket, self.name
        window = LoadWindow.from_state(state, self.config.late_seconds)
        try:
            names = list_batches(bucket, folder, self.config.storage_options)
        except OSError as exc:
            raise SourceError(
                f"push source {folder!r}: cannot list {bucket}/{folder}: {exc}"
            ) from exc
        files = window.new_names(names, f"{folder!r} ({bucket}/{folder})")
        # ids of recently loaded events: an event flushed twice (crash between writing its
        # batch and acknowledging it) may land in a batch of a later load
        recent: list[str] = list(state.get("recent_ids", []))
        seen = set(recent)
        for name in files:
            frame = self._read_file(name, seen)
            recent += frame["webhook_id"].to_list()
            yield Batch(frame, f"{bucket}/{folder}/{name}")
        if not files:
            yield Batch(_frame([]), f"{bucket}/{folder}")
        return {**window.advance(names, files), "recent_ids": recent[-RECENT_IDS:]}

    def _read_file(self, name: str, seen: set[str]) -> pl.DataFrame:
        bucket, folder = self.config.bucket, self.name
        try:
            data = _read_batch(bucket, folder, name, self.config.storage_options)
        except OSError as exc:
            raise SourceError(f"push source {folder!r}: cannot read {name}: {exc}") from exc
        rows: list[dict[str, str | None]] = []
        for number, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                webhook_id, received_at = event["webhook_id"], event["received_at"]
                payload = dict(event["payload"])
            except (ValueError, KeyError, TypeError) as exc:
                raise SourceError(
                    f"push source {folder!r}: {bucket}/{folder}/{name} line {number} is not an "
                    f"event ({exc}); batch files are written by the receiver only."
                ) from exc
            if webhook_id in seen:
                continue
            seen.add(webhook_id)
            row = {  # a payload key named like a lineage column keeps a payload_ prefix
                (f"payload_{k}" if k in LINEAGE_COLUMNS else k): _as_text(v)
                for k, v in payload.items()
            }
            rows.append({"webhook_id": webhook_id, "received_at": received_at, **row})
        return _frame(rows)


def _frame(rows: list[dict[str, str | None]]) -> pl.DataFrame:
    columns = list(dict.fromkeys(k for row in rows for k in row)) or list(LINEAGE_COLUMNS)
    return pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String))


def extract_push(
    table: str,
    bucket: str,
    *,
    processed: Iterable[str] = (),
    storage_options: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Every new event of a push source's bucket in one text frame (for tests and notebooks).

    Args:
        table: the push source (its folder in the bucket).
        bucket: the bucket folder or URL.
        processed: batch file names already loaded (skipped).

    Returns:
        One row per distinct ``webhook_id``, lineage columns first.

    Raises:
        SourceError: a batch file cannot be read or holds a line that is not an event.
    """
    options = PushSourceConfig(
        kind="push",
        secrets_env=["UNUSED"],
        bucket=bucket,
        storage_options=dict(storage_options or {}),
    )
    extraction = PushSource(table, options).extract({"loaded": list(processed)})
    return extraction.collect()
