"""Shared parts of the push tests: a signing sender (the standardwebhooks reference library),
queue backends with unique names, and a real uvicorn server in a thread."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from standardwebhooks.webhooks import Webhook

from featurepipe.connectors.push_queue import EventQueue, open_event_queue

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("FEATUREPIPE_TEST_REDIS", "redis://127.0.0.1:6379/0")
BACKENDS = ("sqlite", "redis")


def new_secret() -> str:
    """A fresh ``whsec_`` secret."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def signed_headers(
    secret: str, body: bytes, *, webhook_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    """Headers a Standard Webhooks sender sends, signed by the reference library."""
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(webhook_id, at, body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def event_body(n: int, **extra: object) -> bytes:
    """A small JSON event."""
    return json.dumps({"type": "order.created", "order": n, "amount": n * 1.5, **extra}).encode()


def queue_url(backend: str, tmp_path: Path) -> tuple[str, str]:
    """(queue URL, unique Redis key prefix) for a backend."""
    prefix = f"fptest-{uuid.uuid4().hex[:10]}"
    if backend == "redis":
        return REDIS_URL, prefix
    return f"sqlite:///{tmp_path / 'queue.db'}", prefix


def open_queue(backend: str, tmp_path: Path) -> EventQueue:
    """A queue of ``backend`` with names no other test uses."""
    url, prefix = queue_url(backend, tmp_path)
    return open_event_queue(url, prefix=prefix)


def drop_redis_prefix(prefix: str) -> None:
    """Delete every Redis key a test created under ``prefix``."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(app: object) -> Iterator[str]:
    """Run ``app`` on a real uvicorn server in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")  # type: ignore[arg-type]
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test receiver did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def wait_until_up(url: str, timeout: float = 20) -> None:
    """Poll ``/health`` until the receiver answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"receiver at {url} did not come up")


def old(seconds: float) -> datetime:
    """A moment ``seconds`` ago (negative: in the future)."""
    return datetime.now(UTC) - timedelta(seconds=seconds)


def push_project(tmp_path: Path, **options: object) -> Path:
    """A project folder: the repository's flights config plus a push source ``orders``
    (secret in ``$ORDERS_SECRET``, bucket ``bucket/``) with ``options`` added."""
    settings = {"kind": "push", "secrets_env": ["ORDERS_SECRET"], "bucket": "bucket", **options}
    lines = ["[sources.orders]", *(f"{k} = {json.dumps(v)}" for k, v in settings.items())]
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    text = (REPO / "featurepipe.toml").read_text(encoding="utf-8")
    (project / "featurepipe.toml").write_text(text + "\n" + "\n".join(lines) + "\n")
    return project
