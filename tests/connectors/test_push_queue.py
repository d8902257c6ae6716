"""Queue backends keep what they committed across a reopen, store a replayed id once, and give
back what a crashed flusher had taken; the same tests run on SQLite and Redis Streams.
Redis receivers on one host are separate consumers, and a restarted one adopts a dead one's
entries."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from featurepipe.connectors.push_queue import open_event_queue, utc_now
from featurepipe.errors import SourceError

from .push_support import BACKENDS, drop_redis_prefix, queue_url


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    url, prefix = queue_url(request.param, tmp_path)
    yield url, prefix
    if request.param == "redis":
        drop_redis_prefix(prefix)


def test_committed_events_survive_a_reopen_and_replays_are_stored_once(
    location: tuple[str, str],
) -> None:
    url, prefix = location
    first = open_event_queue(url, prefix=prefix)
    assert first.put("orders", "msg_1", utc_now(), b'{"a": 1}') is True
    assert first.put("orders", "msg_1", utc_now(), b'{"a": 1}') is False
    assert first.put("refunds", "msg_1", utc_now(), b'{"r": 1}') is True  # per source
    first.close()
    again = open_event_queue(url, prefix=prefix)
    assert [e.webhook_id for e in again.take("orders", 10)] == ["msg_1"]
    assert again.put("orders", "msg_1", utc_now(), b'{"a": 1}') is False
    again.close()


def test_ack_removes_only_the_acknowledged_events(location: tuple[str, str]) -> None:
    url, prefix = location
    queue = open_event_queue(url, prefix=prefix)
    for i in range(5):
        queue.put("orders", f"msg_{i}", utc_now(), b"{}")
    taken = queue.take("orders", 3)
    queue.ack("orders", taken)
    assert [e.webhook_id for e in queue.take("orders", 10)] == ["msg_3", "msg_4"]
    # an id stays known after its event was flushed, so a late replay is still dropped
    assert queue.put("orders", "msg_0", utc_now(), b"{}") is False
    queue.close()


def test_events_a_crashed_flusher_took_are_taken_again(location: tuple[str, str]) -> None:
    url, prefix = location
    crashed = open_event_queue(url, prefix=prefix, claim_idle_ms=0)
    for i in range(4):
        crashed.put("orders", f"msg_{i}", utc_now(), b"{}")
    assert len(crashed.take("orders", 10)) == 4  # taken, never acknowledged
    crashed.close()
    successor = open_event_queue(url, prefix=prefix, claim_idle_ms=0)
    assert [e.webhook_id for e in successor.take("orders", 10)] == [f"msg_{i}" for i in range(4)]
    successor.close()


def test_unknown_backend_is_named() -> None:
    with pytest.raises(SourceError, match="unknown backend"):
        open_event_queue("kafka://127.0.0.1:9092")


TAKER = """
import json, sys
from featurepipe.connectors.push_queue import open_event_queue
queue = open_event_queue(sys.argv[1], prefix=sys.argv[2])
taken = [e.webhook_id for e in queue.take("orders", 3)]
print(json.dumps({"consumer": queue.consumer, "taken": taken}), flush=True)
sys.stdin.read()  # alive, holding its entries, until the test kills it
"""


def test_redis_receivers_on_one_host_keep_their_entries_apart_and_adopt_a_dead_ones(
    tmp_path: Path,
) -> None:
    url, prefix = queue_url("redis", tmp_path)
    queue = open_event_queue(url, prefix=prefix)
    other = None
    try:
        for i in range(6):
            queue.put("orders", f"msg_{i}", utc_now(), b"{}")
        other = subprocess.Popen(
            [sys.executable, "-c", TAKER, url, prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert other.stdout is not None
        held = json.loads(other.stdout.readline())
        assert held["consumer"] == f"{socket.gethostname()}-{other.pid}"
        assert queue.consumer == f"{socket.gethostname()}-{os.getpid()}"  # type: ignore[attr-defined]
        mine = queue.take("orders", 10)
        # the live receiver's entries are not handed out again on this host
        assert [e.webhook_id for e in mine] == [f"msg_{i}" for i in range(3, 6)]
        assert held["taken"] == [f"msg_{i}" for i in range(3)]
        queue.ack("orders", mine)
        other.kill()
        other.wait(10)
        # a receiver started after the crash takes the dead one's entries at once,
        # long before claim_idle_ms (30 s) would hand them to any receiver
        successor = open_event_queue(url, prefix=prefix)
        assert [e.webhook_id for e in successor.take("orders", 10)] == held["taken"]
        consumers = successor._redis.xinfo_consumers(f"{prefix}:orders:events", "flushers")  # type: ignore[attr-defined]
        assert held["consumer"] not in {c["name"].decode() for c in consumers}
        successor.close()
    finally:
        if other is not None:
            if other.poll() is None:
                other.kill()
                other.wait(10)
            for pipe in (other.stdin, other.stdout):
                assert pipe is not None
                pipe.close()
        queue.close()
        drop_redis_prefix(prefix)
