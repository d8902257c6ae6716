"""The webhook receiver: verify Standard Webhooks signatures, commit events to the queue, answer.

``POST /hooks/{source}`` accepts one event; ``GET /health`` says the receiver is up. An event
is answered 2xx only after the queue has committed it; a replayed ``webhook-id`` is answered
2xx and stored once. Rejections store nothing: 404 unknown source, 401 missing or bad
signature or a timestamp out of tolerance, 413 body over the limit (not read whole),
400 a body that is not a JSON object (or is nested too deep), 503 the queue failed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..config import PushSourceConfig
from ..errors import ConfigError, SourceError
from .push_queue import EventQueue, open_event_queue, utc_now

if TYPE_CHECKING:
    import uvicorn

__all__ = [
    "PushEndpoint",
    "build_receiver",
    "create_receiver_app",
    "decode_secret",
    "run_receiver",
    "verify_signature",
]

log = logging.getLogger("featurepipe.push")

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret
DEFAULT_TOLERANCE_SECONDS = 300.0
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_JSON_DEPTH = 32


def decode_secret(secret: str, *, where: str = "push source") -> bytes:
    """The HMAC key of a ``whsec_…`` secret (base64 after the prefix).

    Raises:
        SourceError: the secret is empty or not base64.
    """
    text = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SourceError(
            f"{where}: the webhook secret is not a whsec_ secret with a base64 key; "
            'generate one with: python -c "import base64,os; '
            "print('whsec_' + base64.b64encode(os.urandom(24)).decode())\""
        ) from exc
    if len(key) < 16:
        raise SourceError(f"{where}: the webhook secret is too short (at least 16 bytes needed)")
    return key


@dataclass(frozen=True)
class PushEndpoint:
    """One push source as the receiver sees it.

    Attributes:
        name: the source name, the path segment of ``/hooks/{name}``.
        keys: HMAC keys (decoded secrets); several during a secret rotation.
        tolerance_seconds: largest accepted distance of ``webhook-timestamp`` from now.
        max_body_bytes: larger bodies get 413.
        max_json_depth: deeper JSON gets 400.
    """

    name: str
    keys: tuple[bytes, ...]
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH


class Rejected(Exception):
    """A request that gets a 4xx answer; nothing is stored."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def verify_signature(
    keys: Iterable[bytes],
    webhook_id: str,
    timestamp: str,
    body: bytes,
    signature_header: str,
) -> bool:
    """True when one ``v1,`` signature of the header matches one key (constant-time compare).

    The signed content is ``{webhook_id}.{timestamp}.{body}`` (Standard Webhooks).
    """
    content = f"{webhook_id}.{timestamp}.".encode() + body
    offered = [part[3:].encode() for part in signature_header.split() if part.startswith("v1,")]
    match = False
    for key in keys:
        expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
        for candidate in offered:
            # no early exit: every pair is compared, whichever matches
            match |= hmac.compare_digest(expected, candidate)
    return match


def _check_headers(request: Request, endpoint: PushEndpoint) -> tuple[str, str, str]:
    webhook_id = request.headers.get("webhook-id", "")
    timestamp = request.headers.get("webhook-timestamp", "")
    signature = request.headers.get("webhook-signature", "")
    if not (webhook_id and timestamp and signature):
        raise Rejected(401, "missing webhook-id, webhook-timestamp or webhook-signature header")
    if len(webhook_id) > 256:
        raise Rejected(401, "webhook-id longer than 256 characters")
    try:
        sent = int(timestamp)
    except ValueError as exc:
        raise Rejected(401, "webhook-timestamp is not an integer of seconds") from exc
    skew = time.time() - sent
    if skew > endpoint.tolerance_seconds:
        raise Rejected(401, "webhook-timestamp too old")
    if -skew > endpoint.tolerance_seconds:
        raise Rejected(401, "webhook-timestamp too far in the future")
    return webhook_id, timestamp, signature


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise Rejected(413, f"body larger than {limit} bytes")
        except ValueError as exc:
            raise Rejected(400, "content-length is not a number") from exc
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_depth_within(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True


def _check_json(body: bytes, max_depth: int) -> None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Rejected(400, "body is not valid UTF-8 JSON") from exc
    if not isinstance(value, dict):
        raise Rejected(400, "body must be a JSON object")
    if not _json_depth_within(value, max_depth):
        raise Rejected(400, f"JSON nested deeper than {max_depth} levels")


class Flusher(Protocol):
    """What the receiver starts and stops with itself (see ``push_bucket.BatchFlusher``)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def create_receiver_app(
    endpoints: Sequence[PushEndpoint],
    queue: EventQueue | Mapping[str, EventQueue],
    *,
    flushers: Sequence[Flusher] = (),
) -> Starlette:
    """The ASGI app of the receiver.

    Args:
        endpoints: the push sources, one ``/hooks/{name}`` each.
        queue: where accepted events are committed before the answer; one for every
            source, or one per source name.
        flushers: started with the app and stopped (after a last flush) on shutdown.

    Returns:
        A Starlette app; serve it with ``run_receiver`` or any ASGI server.
    """
    by_name = {e.name: e for e in endpoints}
    queues = dict(queue) if isinstance(queue, Mapping) else dict.fromkeys(by_name, queue)

    async def receive_hook(request: Request) -> JSONResponse:
        source = request.path_params["source"]
        endpoint = by_name.get(source)
        if endpoint is None:
            return JSONResponse({"error": f"unknown push source {source!r}"}, status_code=404)
        try:
            webhook_id, timestamp, signature = _check_headers(request, endpoint)
            body = await _read_body(request, endpoint.max_body_bytes)
            if not verify_signature(endpoint.keys, webhook_id, timestamp, body, signature):
                raise Rejected(401, "no signature matches")
            _check_json(body, endpoint.max_json_depth)
        except Rejected as rejected:
            log.info("%s: rejected %s: %s", source, rejected.status, rejected.reason)
            return JSONResponse({"error": rejected.reason}, status_code=rejected.status)
        try:
            new = await anyio.to_thread.run_sync(
                queues[source].put, source, webhook_id, utc_now(), body
            )
        except Exception:  # the sender retries; nothing was acknowledged
            log.exception("%s: queue failed for webhook-id %s", source, webhook_id)
            return JSONResponse({"error": "queue unavailable, retry later"}, status_code=503)
        return JSONResponse({"accepted": webhook_id, "duplicate": not new})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "sources": sorted(by_name)})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for flusher in flushers:
            flusher.start()
        try:
            yield
        finally:
            for flusher in flushers:  # after uvicorn finished the requests in flight
                await anyio.to_thread.run_sync(flusher.stop)
            for distinct in {id(q): q for q in queues.values()}.values():
                distinct.close()

    return Starlette(
        routes=[
            Route("/hooks/{source}", receive_hook, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def build_receiver(
    sources: Mapping[str, PushSourceConfig], environ: Mapping[str, str] | None = None
) -> Starlette:
    """The receiver of a project's push sources: endpoints, queues and flushers from config.

    Args:
        sources: the push sources by name (``kind = "push"`` in featurepipe.toml).
        environ: where the secrets are read (default: the process environment).

    Raises:
        ConfigError: no push source, or a secret variable is unset or not a whsec_ secret.
        SourceError: a queue cannot be opened.
    """
    from .push_bucket import BatchFlusher

    env = os.environ if environ is None else environ
    if not sources:
        raise ConfigError(
            'no push source in featurepipe.toml; declare one with kind = "push" '
            "(see README: Push sources)."
        )
    endpoints, queues, flushers = [], {}, []
    opened: dict[tuple[str, str], EventQueue] = {}
    for name, cfg in sources.items():
        keys = []
        for var in cfg.secrets_env:
            secret = env.get(var)
            if not secret:
                raise ConfigError(
                    f"sources.{name}.secrets_env: environment variable {var} is not set; "
                    f"export {var}=whsec_... (the secret the sender signs with)."
                )
            try:
                keys.append(decode_secret(secret, where=f"sources.{name} (${var})"))
            except SourceError as exc:
                raise ConfigError(str(exc)) from exc
        endpoints.append(
            PushEndpoint(
                name,
                tuple(keys),
                tolerance_seconds=cfg.tolerance,
                max_body_bytes=cfg.max_body_bytes,
                max_json_depth=cfg.max_json_depth,
            )
        )
        where = (cfg.queue, cfg.queue_prefix)
        if where not in opened:
            opened[where] = open_event_queue(cfg.queue, prefix=cfg.queue_prefix)
        queues[name] = opened[where]
        flushers.append(
            BatchFlusher(
                opened[where],
                cfg.bucket,
                [name],
                flush_size=cfg.flush_size,
                flush_age_seconds=cfg.flush_age,
                storage_options=cfg.storage_options,
            )
        )
    return create_receiver_app(endpoints, queues, flushers=flushers)


def _server_class() -> type[uvicorn.Server]:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM after a graceful stop (exit 143); a drained stop is 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    return DrainingServer


def run_receiver(
    app: Starlette, *, host: str = "127.0.0.1", port: int = 8787, drain_seconds: float = 30
) -> None:
    """Serve the receiver until SIGTERM or SIGINT, then finish in-flight requests and flush.

    Raises:
        SourceError: the address cannot be bound or the app fails to start.
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=int(drain_seconds),
        lifespan="on",
    )
    server = _server_class()(config)
    try:
        asyncio.run(server.serve())
    except SystemExit as exc:  # uvicorn exits when it cannot bind; queued events stay queued
        raise SourceError(
            f"the receiver could not start on {host}:{port}; is the port in use? "
            "Pick another with --port."
        ) from exc
    if not server.started:
        raise SourceError(
            f"the receiver could not start on {host}:{port}; is the port in use? "
            "Pick another with --port."
        )
