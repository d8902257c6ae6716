"""Move queued webhook events into NDJSON batch files in a bucket, and read them back as a table.

Layout: ``{bucket}/{source}/{YYYYmmddTHHMMSS.nanoseconds}Z-{random}.ndjson``, named by the UTC
time the file appears, one event per line: ``{"webhook_id": …, "received_at": …,
"payload": {…}}``. A batch file appears whole or not at all (a local folder: temp file,
fsync, rename; an object store through fsspec: one PUT), and queue entries are acknowledged
only after their file is durable.

The reader (``PushSource``) reads the bucket like an incremental file source: the file
manifest of the pull connectors (``files.FileManifest``) says which batch files are new.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import polars as pl

from ..config import PUSH_RECEIVED_AT_FORMAT, PushSourceConfig
from ..errors import SourceError
from .base import Batch, BatchReader, SourceBase
from .files import FileManifest, ListedFile, url_filesystem
from .push_queue import EventQueue, QueuedEvent

__all__ = [
    "LINEAGE_COLUMNS",
    "RECEIVED_AT_FORMAT",
    "BatchFlusher",
    "PushSource",
    "batch_lines",
    "batch_name",
    "extract_push",
    "list_batches",
    "write_batch",
]

log = logging.getLogger("featurepipe.push")

LINEAGE_COLUMNS = ("webhook_id", "received_at")
RECEIVED_AT_FORMAT = PUSH_RECEIVED_AT_FORMAT
BATCH_SUFFIX = ".ndjson"
RECENT_IDS = 20_000  # webhook ids kept in the state to drop duplicates across loads


def _is_remote(bucket: str) -> bool:
    return "://" in bucket and not bucket.startswith("file://")


def _remote_fs(bucket: str, options: Mapping[str, str] | None) -> tuple[Any, str]:
    """The fsspec filesystem of a bucket URL and the bucket's root path in it."""
    fs, root = url_filesystem(bucket, "push bucket", **dict(options or {}))
    return fs, root.rstrip("/")


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


def write_batch(
    bucket: str,
    source: str,
    events: Sequence[QueuedEvent],
    storage_options: Mapping[str, str] | None = None,
) -> str:
    """Write one batch file atomically and durably; returns its name.

    The name is taken right before the file becomes visible, so names sort about in the
    order files appear (the reader goes by its manifest, not by names).

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
    return [_name(f) for f in _listing(bucket, source, storage_options)]


def _name(file: ListedFile) -> str:
    return PurePosixPath(file.path).name


def _listing(
    bucket: str, source: str, storage_options: Mapping[str, str] | None = None
) -> list[ListedFile]:
    """The complete batch files of ``source`` with their size and mtime, oldest first."""
    if _is_remote(bucket):
        fs, root = _remote_fs(bucket, storage_options)
        fs.invalidate_cache()  # a listing cached earlier would miss the newest batches
        folder = f"{root}/{source}"
    else:
        fs, folder = fsspec.filesystem("file"), str(_local(bucket) / source)
    if not fs.exists(folder):
        return []
    files = [ListedFile.from_info(fs, info) for info in fs.ls(folder, detail=True)]
    batches = [
        f
        for f in files
        if f.kind == "file" and _name(f).endswith(BATCH_SUFFIX) and not _name(f).startswith(".")
    ]
    return sorted(batches, key=_name)


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


def _manifest(state: Mapping[str, Any], files: Sequence[ListedFile]) -> Mapping[str, Any]:
    """The file manifest of a committed state. A state of the earlier reader (a watermark
    ``cutoff`` with the ``loaded`` names after it, or a ``manifest`` list of names) counts
    the files it covers as read."""
    manifest = state.get("manifest")
    if isinstance(manifest, Mapping):
        return manifest
    loaded = set(manifest or state.get("loaded", []))
    cutoff = str(state.get("cutoff", ""))
    return {
        f.url: {"size": f.size, "mtime": f.mtime}
        for f in files
        if _name(f) in loaded or _name(f) < cutoff
    }


class PushSource(SourceBase[PushSourceConfig]):
    """The batch files a push source's receiver wrote, new ones only.

    New means not in the file manifest of the pull connectors (``files.FileManifest``:
    path, size, mtime and content hash of every batch file read), so a batch file is read
    once however late it appears, whatever its name or mtime. Every top-level key of the
    payloads becomes a text column (nested values as JSON text), so typing happens in
    ``schema`` like for any file; ``webhook_id`` and ``received_at`` are kept as lineage
    columns, and a repeated ``webhook_id`` (an event flushed twice after a crash) is
    dropped, within a load and against the last ``RECENT_IDS`` ids of earlier loads.
    """

    kind = "push"
    stage = "beta"
    options = PushSourceConfig
    summary = "signed webhooks (featurepipe serve) → queue → NDJSON batches in a bucket"

    def read(self, state: Mapping[str, Any]) -> BatchReader:
        """Yield one batch per new batch file; return the manifest and the recent ids."""
        bucket, folder = self.config.bucket, self.name
        try:
            files = _listing(bucket, folder, self.config.storage_options)
        except OSError as exc:
            raise SourceError(
                f"push source {folder!r}: cannot list {bucket}/{folder}: {exc}; check "
                f"`sources.{folder}.bucket` and `storage_options`."
            ) from exc
        manifest = FileManifest(_manifest(state, files))
        # ids of recently loaded events: an event flushed twice (crash between writing its
        # batch and acknowledging it) may land in a batch of a later load
        recent: list[str] = list(state.get("recent_ids", []))
        seen = set(recent)
        read = 0
        for file in files:
            if manifest.unchanged(file):
                continue
            data = self._read_bytes(file)
            if not manifest.record(file, hashlib.sha256(data).hexdigest()):
                continue  # touched, not changed
            frame = self._parse(file.url, data, seen)
            recent += frame["webhook_id"].to_list()
            read += 1
            yield Batch(frame, file.url)
        if not read:
            yield Batch(_frame([]), f"{bucket}/{folder}")
        return {"manifest": manifest.entries, "recent_ids": recent[-RECENT_IDS:]}

    def _read_bytes(self, file: ListedFile) -> bytes:
        try:
            return bytes(file.fs.cat_file(file.path))
        except OSError as exc:
            raise SourceError(f"push source {self.name!r}: cannot read {file.url}: {exc}") from exc

    def _parse(self, url: str, data: bytes, seen: set[str]) -> pl.DataFrame:
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
                    f"push source {self.name!r}: {url} line {number} is not an event "
                    f"({exc}); batch files are written by the receiver only."
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
    state: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Every new event of a push source's bucket in one text frame (for tests and notebooks).

    Args:
        table: the push source (its folder in the bucket).
        bucket: the bucket folder or URL.
        state: a committed state of the source (its manifest's files are skipped).

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
    extraction = PushSource(table, options).extract(state)
    return extraction.collect()
