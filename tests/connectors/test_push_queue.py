"""Queue backends keep what they committed across a reopen, store a replayed id once, and give
back what a crashed flusher had taken; the same tests run on SQLite and Redis Streams."""

from __future__ import annotations

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
