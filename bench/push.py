"""Benchmark: the webhook receiver against the same ASGI server answering 200 at once.

Each configuration runs a real receiver process (uvicorn, 127.0.0.1) and 16 concurrent
senders in this process (asyncio, one keep-alive connection each) that post signed
events for a fixed number of events. It reports accepted events per second and the
p50/p99 latency of the acknowledgement, and the ratio to the baseline measured in the
same run:

- ``baseline``: the same Starlette app shape on the same uvicorn server, answering 200
  without reading the headers, verifying, parsing or storing;
- ``sqlite``: the real receiver, SQLite queue in WAL mode with an fsync per event;
- ``redis``: the real receiver, Redis Streams queue (Redis on 127.0.0.1:6379).

The flusher runs in every real receiver, so events also go to a bucket while measured.
Senders sign each event with the standardwebhooks library, outside the timed request.
Timings are reported, never asserted. Run alone: ``.venv/bin/python bench/push.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from standardwebhooks.webhooks import Webhook

REDIS_URL = os.environ.get("FEATUREPIPE_BENCH_REDIS", "redis://127.0.0.1:6379/0")

SERVER = """
import os, sys
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from featurepipe.connectors.push import (
    PushEndpoint, create_receiver_app, decode_secret, run_receiver,
)
from featurepipe.connectors.push_bucket import BatchFlusher
from featurepipe.connectors.push_queue import open_event_queue

mode, port, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "baseline":
    async def ok(request):
        return JSONResponse({"accepted": "x", "duplicate": False})
    async def health(request):
        return JSONResponse({"status": "ok"})
    app = Starlette(routes=[Route("/hooks/{source}", ok, methods=["POST"]),
                            Route("/health", health)])
else:
    url = os.environ["BENCH_REDIS"] if mode == "redis" else f"sqlite:///{work}/queue.db"
    queue = open_event_queue(url, prefix=os.environ["BENCH_PREFIX"])
    flusher = BatchFlusher(queue, f"{work}/bucket", ["orders"], flush_size=1000)
    endpoint = PushEndpoint("orders", (decode_secret(os.environ["BENCH_SECRET"]),))
    app = create_receiver_app([endpoint], queue, flushers=[flusher])
run_receiver(app, port=port)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signed(secret: str, n: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"type": "order.created", "order": n, "amount": n * 1.5}).encode()
    webhook_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    return body, {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, now, body.decode()),
        "content-type": "application/json",
    }


async def send_all(url: str, requests: list[tuple[bytes, dict[str, str]]], senders: int) -> dict:
    latencies: list[float] = []
    accepted = 0
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def sender() -> None:
        nonlocal accepted
        async with httpx.AsyncClient(timeout=30) as client:
            while not queue.empty():
                body, headers = queue.get_nowait()
                start = time.perf_counter()
                response = await client.post(f"{url}/hooks/orders", content=body, headers=headers)
                latencies.append(time.perf_counter() - start)
                accepted += response.status_code == 200

    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "accepted": accepted,
        "events_per_s": accepted / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
    }


def run_mode(mode: str, events: int, senders: int, secret: str) -> dict:
    port = free_port()
    prefix = f"fpbench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="fp-push-bench-") as work:
        env = {**os.environ, "BENCH_SECRET": secret, "BENCH_PREFIX": prefix}
        env["BENCH_REDIS"] = REDIS_URL
        log = Path(work) / "server.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-c", SERVER, mode, str(port), work],
                env=env,
                stdout=out,
                stderr=out,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError as exc:
                    if time.monotonic() > deadline or server.poll() is not None:
                        message = f"{mode} server did not start:\n{log.read_text()}"
                        raise RuntimeError(message) from exc
                    time.sleep(0.1)
            requests = [signed(secret, n) for n in range(events)]  # signing is not timed
            asyncio.run(send_all(url, requests[: senders * 10], senders))  # warm-up
            result = asyncio.run(send_all(url, requests[senders * 10 :], senders))
        finally:
            server.terminate()
            server.wait(60)
            if mode == "redis":
                import redis

                client = redis.Redis.from_url(REDIS_URL)
                keys = list(client.scan_iter(f"{prefix}:*", count=1000))
                for i in range(0, len(keys), 500):
                    client.delete(*keys[i : i + 500])
                client.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000, help="events per configuration")
    parser.add_argument("--senders", type=int, default=16, help="concurrent senders")
    parser.add_argument("--modes", default="baseline,sqlite,redis")
    args = parser.parse_args()
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    results = {m: run_mode(m, args.events, args.senders, secret) for m in args.modes.split(",")}

    console = Console()
    table = Table(
        title=f"push receiver, {args.senders} concurrent senders, "
        f"{args.events - args.senders * 10} timed events per configuration "
        f"({platform.machine()}, "
        f"{os.cpu_count()} cores)",
        title_justify="left",
    )
    for column in ("configuration", "accepted", "events/s", "ratio", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    base = results.get("baseline", {}).get("events_per_s")
    for mode, r in results.items():
        ratio = f"{r['events_per_s'] / base:.2f}" if base else "-"
        table.add_row(
            mode,
            str(r["accepted"]),
            f"{r['events_per_s']:.0f}",
            ratio,
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
        )
    console.print(table)
    console.print(
        "ratio = events/s of the configuration / events/s of the baseline (the same uvicorn "
        "server answering 200 without verifying or storing), measured in the same run. "
        "Senders and server share this machine's cores."
    )


if __name__ == "__main__":
    main()
