"""Durable queues for received webhook events: SQLite (embedded default) and Redis Streams.

An event is committed here before its webhook is answered 2xx. ``put`` is idempotent on
``(source, webhook_id)``: a replayed id is stored once. The flusher ``take``s events,
writes them to the bucket and only then ``ack``s them, which removes them from the queue.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ..errors import SourceError

__all__ = [
    "EventQueue",
    "QueuedEvent",
    "RedisEventQueue",
    "SQLiteEventQueue",
    "open_event_queue",
]

DEFAULT_DEDUPE_SECONDS = 3 * 24 * 3600  # Standard Webhooks senders retry for up to ~3 days


@dataclass(frozen=True)
class QueuedEvent:
    """One received event as the queue holds it.

    Attributes:
        source: the push source it was posted to.
        webhook_id: the sender's ``webhook-id`` (the idempotency key).
        received_at: when the receiver accepted it (UTC).
        body: the raw request body, exactly as signed.
        handle: the backend's key for ``ack`` (SQLite row id, Redis stream entry id).
    """

    source: str
    webhook_id: str
    received_at: datetime
    body: bytes
    handle: str


class EventQueue(Protocol):
    """What the receiver and the flusher need from a queue backend."""

    def put(self, source: str, webhook_id: str, received_at: datetime, body: bytes) -> bool:
        """Commit one event durably; False when this ``webhook_id`` was already stored."""
        ...

    def take(self, source: str, limit: int) -> list[QueuedEvent]:
        """The oldest unacknowledged events of ``source``, at most ``limit``, oldest first."""
        ...

    def ack(self, source: str, events: list[QueuedEvent]) -> None:
        """Remove events whose batch is durable in the bucket."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_source ON events (source, seq);
CREATE TABLE IF NOT EXISTS seen (
    source TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (source, webhook_id)
) WITHOUT ROWID;
"""


class SQLiteEventQueue:
    """The embedded queue: one SQLite file in WAL mode with ``synchronous=FULL``.

    A commit has reached the disk (fsync) before ``put`` returns, so an acknowledged
    event survives a killed process and a lost machine power alike. ``seen`` keeps the
    ids of the last ``dedupe_seconds`` so that a replay after the flush is still dropped.
    """

    def __init__(self, path: str | Path, *, dedupe_seconds: float = DEFAULT_DEDUPE_SECONDS):
        self.path = Path(path)
        self.dedupe_seconds = dedupe_seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._last_prune = 0.0
        try:
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise SourceError(
                f"push queue {self.path}: cannot open the SQLite queue: {exc}; "
                "check that the folder is writable."
            ) from exc

    def put(self, source: str, webhook_id: str, received_at: datetime, body: bytes) -> bool:
        """Commit one event; False when its id was already stored (a replay)."""
        now = received_at.timestamp()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                new = self._db.execute(
                    "INSERT OR IGNORE INTO seen (source, webhook_id, received_at) VALUES (?, ?, ?)",
                    (source, webhook_id, now),
                ).rowcount
                if new:
                    self._db.execute(
                        "INSERT INTO events (source, webhook_id, received_at, body) "
                        "VALUES (?, ?, ?, ?)",
                        (source, webhook_id, received_at.isoformat(), body),
                    )
                if now - self._last_prune > 60:
                    self._db.execute(
                        "DELETE FROM seen WHERE received_at < ?", (now - self.dedupe_seconds,)
                    )
                    self._last_prune = now
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return bool(new)

    def take(self, source: str, limit: int) -> list[QueuedEvent]:
        """The oldest events of ``source`` not yet acknowledged."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, webhook_id, received_at, body FROM events "
                "WHERE source = ? ORDER BY seq LIMIT ?",
                (source, limit),
            ).fetchall()
        return [
            QueuedEvent(source, wid, datetime.fromisoformat(at), bytes(body), str(seq))
            for seq, wid, at, body in rows
        ]

    def ack(self, source: str, events: list[QueuedEvent]) -> None:
        """Delete events whose batch is durable."""
        with self._lock:  # one transaction, one fsync, for the whole batch
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "DELETE FROM events WHERE seq = ?", [(int(e.handle),) for e in events]
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def pending(self, source: str) -> int:
        """Number of events of ``source`` waiting for the flusher."""
        with self._lock:
            (count,) = self._db.execute(
                "SELECT count(*) FROM events WHERE source = ?", (source,)
            ).fetchone()
        return int(count)

    def close(self) -> None:
        """Close the database (the WAL is checkpointed by SQLite)."""
        with self._lock:
            self._db.close()


# KEYS: seen key, stream key. ARGV: dedupe seconds, webhook id, received_at, body.
# Atomic in Redis: either the id is marked seen AND the event is in the stream, or neither.
_PUT_SCRIPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'at', ARGV[3], 'body', ARGV[4])
  return 1
end
return 0
"""


class RedisEventQueue:
    """Redis Streams, for several receivers behind a load balancer.

    One stream per source (``{prefix}:{source}:events``) read through a consumer group,
    so several flushers share the work; a dedupe key per id (``SET NX EX``) is set in the
    same Lua script as the ``XADD``. Each receiver process is its own consumer,
    ``{hostname}-{pid}``, so two receivers on one host never share a pending list. Entries
    a crashed flusher had taken are taken over at once by the next receiver started on the
    same host (the crashed one's pid is gone), and by any receiver after ``claim_idle_ms``.
    Durability across a Redis restart is Redis's own: run it with ``appendonly yes`` and
    ``appendfsync always`` (or ``everysec``, which can lose the last second) for that.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "featurepipe",
        dedupe_seconds: float = DEFAULT_DEDUPE_SECONDS,
        claim_idle_ms: int = 30_000,
        consumer: str | None = None,
    ):
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - redis is a dependency
            raise SourceError("the Redis queue needs the redis package: pip install redis") from exc
        self.url = url
        self.prefix = prefix
        self.dedupe_seconds = int(dedupe_seconds)
        self.claim_idle_ms = claim_idle_ms
        self.consumer = consumer or consumer_name()
        self._redis = redis.Redis.from_url(url, protocol=2)  # replies as lists, any server
        self._error = redis.RedisError
        self._put = self._redis.register_script(_PUT_SCRIPT)
        self._groups: set[str] = set()

    def _stream(self, source: str) -> str:
        return f"{self.prefix}:{source}:events"

    def _ensure_group(self, source: str) -> None:
        if source in self._groups:
            return
        try:
            self._redis.xgroup_create(self._stream(source), "flushers", id="0", mkstream=True)
        except self._error as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._adopt_dead_consumers(source)
        self._groups.add(source)

    def _adopt_dead_consumers(self, source: str) -> None:
        """Take over the entries of this host's receivers whose process is gone, then drop
        them from the group (a restarted receiver has a new pid, hence a new name)."""
        stream, host = self._stream(source), socket.gethostname()
        consumers: Any = self._redis.xinfo_consumers(stream, "flushers")
        for info in consumers:
            name = _text(info["name"])
            owner, _, pid = name.rpartition("-")
            if name == self.consumer or owner != host or not pid.isdigit():
                continue
            if _process_alive(int(pid)):
                continue
            while True:
                pending: Any = self._redis.xpending_range(
                    stream, "flushers", "-", "+", 1000, consumername=name
                )
                if not pending:
                    break
                ids = [p["message_id"] for p in pending]
                self._redis.xclaim(stream, "flushers", self.consumer, 0, ids, justid=True)
            self._redis.xgroup_delconsumer(stream, "flushers", name)

    def put(self, source: str, webhook_id: str, received_at: datetime, body: bytes) -> bool:
        """XADD the event unless its id was seen; atomic in a Lua script."""
        seen = f"{self.prefix}:{source}:seen:{webhook_id}"
        new = self._put(
            keys=[seen, self._stream(source)],
            args=[self.dedupe_seconds, webhook_id, received_at.isoformat(), body],
        )
        return bool(new)

    def take(self, source: str, limit: int) -> list[QueuedEvent]:
        """This consumer's pending entries first, then stale ones of others, then new ones."""
        self._ensure_group(source)
        stream = self._stream(source)
        mine: Any = self._redis.xreadgroup("flushers", self.consumer, {stream: "0"}, count=limit)
        entries: list[tuple[bytes, dict[bytes, bytes]]] = list(mine[0][1]) if mine else []
        if len(entries) < limit:
            claimed: Any = self._redis.xautoclaim(
                stream, "flushers", self.consumer, self.claim_idle_ms, "0-0", count=limit
            )
            entries += [e for e in claimed[1] if e[1]][: limit - len(entries)]
        if len(entries) < limit:
            fresh: Any = self._redis.xreadgroup(
                "flushers", self.consumer, {stream: ">"}, count=limit - len(entries)
            )
            entries += list(fresh[0][1]) if fresh else []
        seen: set[bytes] = set()
        events = []
        for entry_id, fields in entries:
            if entry_id in seen or not fields:
                continue
            seen.add(entry_id)
            events.append(_from_fields(source, entry_id, fields))
        events.sort(key=lambda e: tuple(int(p) for p in e.handle.split("-")))
        return events

    def ack(self, source: str, events: list[QueuedEvent]) -> None:
        """XACK and XDEL the entries, in one round trip."""
        if not events:
            return
        ids = [e.handle for e in events]
        pipe = self._redis.pipeline(transaction=True)
        pipe.xack(self._stream(source), "flushers", *ids)
        pipe.xdel(self._stream(source), *ids)
        pipe.execute()

    def pending(self, source: str) -> int:
        """Entries of ``source`` still in the stream (taken or not)."""
        return int(self._redis.xlen(self._stream(source)))

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()


def consumer_name() -> str:
    """This process's name in a Redis consumer group: ``{hostname}-{pid}``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _from_fields(source: str, entry_id: bytes, fields: dict[bytes, bytes]) -> QueuedEvent:
    return QueuedEvent(
        source=source,
        webhook_id=fields[b"id"].decode(),
        received_at=datetime.fromisoformat(fields[b"at"].decode()),
        body=fields[b"body"],
        handle=entry_id.decode(),
    )


def open_event_queue(url: str, **options: Any) -> EventQueue:
    """Open a queue from a URL: ``sqlite:///path/queue.db`` or ``redis://host:port/db``.

    Args:
        url: where the queue lives; a bare path means SQLite.
        **options: ``dedupe_seconds``; for Redis also ``prefix``, ``claim_idle_ms``.

    Returns:
        The queue.

    Raises:
        SourceError: the URL names no known backend, or the backend cannot be opened.
    """
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisEventQueue(url, **options)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") :]
    if "://" in url:
        raise SourceError(
            f"push queue {url!r}: unknown backend; use sqlite:///path/queue.db or redis://host:6379/0"
        )
    sqlite_options = {k: v for k, v in options.items() if k == "dedupe_seconds"}
    return SQLiteEventQueue(url, **sqlite_options)  # prefix and claiming are Redis's


def utc_now() -> datetime:
    """The current time in UTC (one place, so tests and the receiver agree)."""
    return datetime.fromtimestamp(time.time(), UTC)
