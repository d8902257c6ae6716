"""Benchmark: the webhook receiver against the same ASGI server answering 200 at once.

Each configuration runs a real receiver process (uvicorn, 127.0.0.1) and 16 concurrent
senders spread over several sender processes. A sender holds one keep-alive connection and
posts one signed event after the other, on a plain asyncio stream (a hand-built HTTP/1.1
request, the answer's head and body read back), so a sender costs little CPU next to the
server; the table shows both sides' CPU so that can be checked. With two or more cores the
server is pinned to core 0 and the senders to the other cores (``taskset`` / sched_setaffinity).

Configurations, measured in the same run and in rounds (baseline, sqlite, redis, baseline, …):

- ``baseline``: the same Starlette app shape on the same uvicorn server, answering 200
  without verifying or storing;
- ``sqlite``: the real receiver, SQLite queue in WAL mode with an fsync per event;
- ``redis``: the real receiver, Redis Streams queue (Redis on 127.0.0.1:6379).

The flusher runs in every real receiver, so events also go to a bucket while measured.
Reported per configuration and round: accepted events/s over the timed window (after a
warm-up), its ratio to the baseline of the same round, p50/p99 acknowledgement latency, the
server's CPU-seconds per event (user + system, from /proc) and how busy the server's core and
the senders were, and for redis the Redis server's CPU per event (from INFO; Redis is shared
with anything else using it). Timings are reported, never asserted.
Run alone: ``.venv/bin/python -P bench/push.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
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


@dataclass
class Window:
    """When the senders start, when timing starts and ends (time.monotonic, system-wide)."""

    begin: float
    start: float
    end: float


@dataclass
class SenderResult:
    accepted: int = 0
    refused: int = 0
    reconnects: int = 0
    latencies: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu_seconds() -> float:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    info = client.info("cpu")
    client.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def request_bytes(port: int, webhook: Webhook, webhook_id: str, n: int) -> bytes:
    body = json.dumps({"type": "order.created", "order": n, "amount": n * 1.5})
    now = datetime.now(UTC)
    head = (
        f"POST /hooks/orders HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"webhook-id: {webhook_id}\r\nwebhook-timestamp: {int(now.timestamp())}\r\n"
        f"webhook-signature: {webhook.sign(webhook_id, now, body)}\r\n\r\n"
    )
    return (head + body).encode()


async def one_sender(
    port: int, webhook: Webhook, name: str, window: Window, result: SenderResult
) -> None:
    """One keep-alive connection posting events back to back until the window ends."""
    n = 0
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.monotonic() < window.end:
        request = request_bytes(port, webhook, f"msg_{name}_{n}", n)  # signed before the clock
        n += 1
        started = time.monotonic()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            result.reconnects += 1
            continue
        done = time.monotonic()
        if started >= window.start and done <= window.end:
            if head.startswith(b"HTTP/1.1 200"):
                result.accepted += 1
                result.latencies.append(done - started)
            else:
                result.refused += 1
    writer.close()


def sender_process(
    port: int, secret: str, senders: int, window: Window, cpus: set[int] | None, out: mp.Queue
) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    webhook = Webhook(secret)
    result = SenderResult()
    tag = f"{os.getpid()}"

    async def main() -> None:
        await asyncio.sleep(max(0.0, window.begin - time.monotonic()))
        tasks = [
            asyncio.create_task(one_sender(port, webhook, f"{tag}_{i}", window, result))
            for i in range(senders)
        ]
        await asyncio.sleep(max(0.0, window.start - time.monotonic()))
        cpu_at_start = time.process_time()
        await asyncio.gather(*tasks)
        result.cpu_seconds = time.process_time() - cpu_at_start

    asyncio.run(main())
    out.put(result)


def start_server(mode: str, port: int, work: str, secret: str, prefix: str, pin: bool):
    env = {**os.environ, "BENCH_SECRET": secret, "BENCH_PREFIX": prefix, "BENCH_REDIS": REDIS_URL}
    command = [sys.executable, "-c", SERVER, mode, str(port), work]
    if pin:
        command = [shutil.which("taskset") or "taskset", "-c", "0", *command]
    log = Path(work) / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError as exc:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError(f"{mode} server did not start:\n{log.read_text()}") from exc
            time.sleep(0.1)


def run_mode(mode: str, args: argparse.Namespace, secret: str) -> dict:
    port = free_port()
    prefix = f"fpbench-{uuid.uuid4().hex[:8]}"
    cores = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cores) >= 2 and shutil.which("taskset") is not None
    sender_cpus = set(cores[1:]) if pin else None
    with tempfile.TemporaryDirectory(prefix="fp-push-bench-") as work:
        server = start_server(mode, port, work, secret, prefix, pin)
        load_before = os.getloadavg()[0]
        try:
            now = time.monotonic()
            window = Window(now + 1.0, now + 1.0 + args.warmup, 0.0)
            window.end = window.start + args.seconds
            out: mp.Queue = mp.Queue()
            split = [args.senders // args.processes] * args.processes
            for i in range(args.senders % args.processes):
                split[i] += 1
            workers = [
                mp.Process(target=sender_process, args=(port, secret, n, window, sender_cpus, out))
                for n in split
                if n
            ]
            for w in workers:
                w.start()
            time.sleep(max(0.0, window.start - time.monotonic()))
            server_cpu, redis_cpu = cpu_seconds(server.pid), redis_cpu_seconds()
            time.sleep(max(0.0, window.end - time.monotonic()))
            server_cpu = cpu_seconds(server.pid) - server_cpu
            redis_cpu = redis_cpu_seconds() - redis_cpu
            results = [out.get(timeout=120) for _ in workers]
            for w in workers:
                w.join(30)
        finally:
            server.terminate()
            server.wait(60)
            if mode != "baseline":
                drop_redis_keys(prefix)
    latencies = sorted(x for r in results for x in r.latencies)
    accepted = sum(r.accepted for r in results)
    return {
        "accepted": accepted,
        "refused": sum(r.refused for r in results),
        "reconnects": sum(r.reconnects for r in results),
        "events_per_s": accepted / args.seconds,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else float("nan"),
        "server_ms_per_event": server_cpu / max(accepted, 1) * 1000,
        "server_core": server_cpu / args.seconds,
        "senders_cpu": sum(r.cpu_seconds for r in results) / args.seconds,
        "redis_ms_per_event": redis_cpu / max(accepted, 1) * 1000 if mode == "redis" else None,
        "load": (load_before, os.getloadavg()[0]),
        "pinned": pin,
    }


def drop_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30, help="timed seconds per configuration")
    parser.add_argument("--warmup", type=float, default=3, help="untimed seconds before that")
    parser.add_argument("--senders", type=int, default=16, help="concurrent senders in all")
    parser.add_argument("--processes", type=int, default=4, help="sender processes")
    parser.add_argument("--rounds", type=int, default=2, help="times each configuration runs")
    parser.add_argument("--modes", default="baseline,sqlite,redis")
    parser.add_argument("--no-pin", action="store_true", help="let the OS place processes")
    args = parser.parse_args()
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    modes = args.modes.split(",")
    console = Console(width=max(Console().width, 150))
    rows = []
    for round_number in range(1, args.rounds + 1):
        for mode in modes:
            result = run_mode(mode, args, secret)
            rows.append((round_number, mode, result))
            console.print(
                f"round {round_number} {mode}: {result['events_per_s']:.0f} events/s",
                style="dim",
            )
    print_table(console, args, rows)


def print_table(console: Console, args: argparse.Namespace, rows: list) -> None:
    pinned = rows[0][2]["pinned"] if rows else False
    placement = "server on core 0, senders on the others" if pinned else "not pinned"
    table = Table(
        title=f"push receiver: {args.senders} senders in {args.processes} processes, "
        f"{args.seconds:g} s timed per configuration after {args.warmup:g} s warm-up; "
        f"{placement} ({platform.machine()}, {os.cpu_count()} cores)",
        title_justify="left",
    )
    columns = (
        "round", "configuration", "accepted", "events/s", "ratio", "p50 ms", "p99 ms",
        "server CPU ms/event", "server core", "senders cores", "redis CPU ms/event", "load avg",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "configuration" else "right")
    base = {n: r["events_per_s"] for n, m, r in rows if m == "baseline"}
    for n, mode, r in rows:
        ratio = f"{r['events_per_s'] / base[n]:.2f}" if base.get(n) else "-"
        redis_cpu = r["redis_ms_per_event"]
        table.add_row(
            str(n),
            mode,
            f"{r['accepted']}" + (f" ({r['refused']} refused)" if r["refused"] else ""),
            f"{r['events_per_s']:.0f}",
            ratio,
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['server_ms_per_event']:.2f}",
            f"{r['server_core']:.0%}",
            f"{r['senders_cpu']:.2f}",
            "-" if redis_cpu is None else f"{redis_cpu:.3f}",
            f"{r['load'][0]:.2f}→{r['load'][1]:.2f}",
        )
    console.print(table)
    console.print(
        "ratio = events/s of the configuration / events/s of the baseline (the same uvicorn "
        "server answering 200 without verifying or storing) of the same round. server core "
        "= the server process's CPU-seconds / timed seconds (100% = one core); senders cores "
        "the same for all sender processes together. The machine is shared: the load "
        "average (1 min, before → after) shows what else ran."
    )


if __name__ == "__main__":
    main()
