"""Crash test: 10,000 signed events, the receiver SIGKILLed several times mid-stream and
restarted; every acknowledged event ends up in the bucket, exactly once after de-duplication.
Runs against both queue backends (SQLite and Redis Streams), with a real receiver process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from featurepipe.connectors.push_bucket import extract_push, list_batches

from .push_support import (
    BACKENDS,
    drop_redis_prefix,
    event_body,
    free_port,
    new_secret,
    push_project,
    queue_url,
    signed_headers,
    wait_until_up,
)

EVENTS = 10_000
SENDERS = 8
KILL_AT = (1_500, 4_000, 6_500, 8_500)  # acknowledged counts at which the receiver is killed


class ReceiverProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.url = f"http://127.0.0.1:{env['FP_PORT']}"
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "featurepipe", "serve", "-C", self.env["FP_PROJECT"],
                 "--port", self.env["FP_PORT"]],
                env=self.env, stdout=out, stderr=out,
            )  # fmt: skip
        wait_until_up(self.url)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.kills += 1

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def _send(
    receiver: ReceiverProcess, secret: str, ids: range, acked: list[str], stop: threading.Event
) -> None:
    with httpx.Client(timeout=5) as client:
        for n in ids:
            webhook_id = f"msg_{n:06d}"
            body = event_body(n)
            while not stop.is_set():  # retry with the same webhook-id until a 2xx
                try:
                    response = client.post(
                        f"{receiver.url}/hooks/orders",
                        content=body,
                        headers=signed_headers(secret, body, webhook_id=webhook_id),
                    )
                    if response.status_code == 200:
                        acked.append(webhook_id)
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_no_acknowledged_event_is_lost_when_the_receiver_is_killed(
    backend: str, tmp_path: Path
) -> None:
    url, prefix = queue_url(backend, tmp_path)
    secret = new_secret()
    project = push_project(tmp_path, queue=url, queue_prefix=prefix, flush_size=500, flush_age=0.3)
    env = {
        **os.environ,
        "ORDERS_SECRET": secret,
        "FP_PROJECT": str(project),
        "FP_PORT": str(free_port()),
    }
    receiver = ReceiverProcess(env, tmp_path / "receiver.log")
    receiver.start()
    acked: list[str] = []
    stop = threading.Event()
    senders = [
        threading.Thread(
            target=_send, args=(receiver, secret, range(i, EVENTS, SENDERS), acked, stop)
        )
        for i in range(SENDERS)
    ]
    try:
        for t in senders:
            t.start()
        deadline = time.monotonic() + 240
        for threshold in KILL_AT:
            while len(acked) < threshold and time.monotonic() < deadline:
                time.sleep(0.01)
            receiver.kill()
            time.sleep(0.3)  # senders see refused connections and keep retrying
            receiver.start()
        for t in senders:
            t.join(max(1.0, deadline - time.monotonic()))
        assert len(acked) == EVENTS, f"only {len(acked)} acknowledged in time"
        assert receiver.terminate() == 0, receiver.log.read_text()[-2000:]  # drained, flushed
    finally:
        stop.set()
        if receiver.process and receiver.process.poll() is None:
            receiver.process.kill()
            receiver.process.wait(10)
        if backend == "redis":
            drop_redis_prefix(prefix)

    assert receiver.kills == len(KILL_AT)
    bucket = str(project / "bucket")
    assert list_batches(bucket, "orders")
    frame = extract_push("orders", bucket)
    ids = frame["webhook_id"].to_list()
    assert len(ids) == len(set(ids)) == EVENTS  # after de-duplication: each exactly once
    assert set(ids) == set(acked)  # 0 lost
    assert sorted(int(v) for v in frame["order"]) == list(range(EVENTS))
