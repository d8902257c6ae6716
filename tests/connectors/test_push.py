"""The webhook receiver on a real uvicorn server, with senders signing through the
standardwebhooks reference library; every case runs against SQLite and Redis Streams."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from featurepipe.connectors.push import PushEndpoint, create_receiver_app, decode_secret
from featurepipe.connectors.push_queue import EventQueue, open_event_queue
from featurepipe.errors import SourceError

from .push_support import (
    BACKENDS,
    drop_redis_prefix,
    event_body,
    free_port,
    new_secret,
    old,
    queue_url,
    serve_in_thread,
    signed_headers,
)


@dataclass
class Receiver:
    url: str
    secret: str
    old_secret: str
    queue: EventQueue

    def pending(self, source: str = "orders") -> int:
        return self.queue.pending(source)  # type: ignore[attr-defined]

    def post(self, body: bytes, headers: dict[str, str], source: str = "orders") -> httpx.Response:
        return httpx.post(f"{self.url}/hooks/{source}", content=body, headers=headers, timeout=10)


@pytest.fixture(params=BACKENDS)
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receiver]:
    url, prefix = queue_url(request.param, tmp_path)
    queue = open_event_queue(url, prefix=prefix)
    secret, old_secret = new_secret(), new_secret()
    endpoint = PushEndpoint(
        "orders", (decode_secret(secret), decode_secret(old_secret)), max_body_bytes=4096
    )
    # the app closes the queue on shutdown; a second handle reads what it stored
    reader = open_event_queue(url, prefix=prefix)
    with serve_in_thread(create_receiver_app([endpoint], queue)) as url:
        yield Receiver(url, secret, old_secret, reader)
    if request.param == "redis":
        drop_redis_prefix(prefix)
    reader.close()


def test_signed_event_is_committed_and_a_replay_is_stored_once(receiver: Receiver) -> None:
    body = event_body(1)
    headers = signed_headers(receiver.secret, body, webhook_id="msg_replayed")
    first = receiver.post(body, headers)
    again = receiver.post(body, headers)
    assert (first.status_code, first.json()["duplicate"]) == (200, False)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    events = receiver.queue.take("orders", 10)
    assert [(e.webhook_id, e.body) for e in events] == [("msg_replayed", body)]


def test_both_secrets_of_a_rotation_are_accepted(receiver: Receiver) -> None:
    for n, secret in enumerate((receiver.secret, receiver.old_secret)):
        body = event_body(n)
        assert receiver.post(body, signed_headers(secret, body)).status_code == 200
    assert receiver.pending() == 2


def test_one_good_signature_among_several_is_enough(receiver: Receiver) -> None:
    body = event_body(1)
    headers = signed_headers(receiver.secret, body)
    wrong = signed_headers(new_secret(), body, webhook_id=headers["webhook-id"])
    at = headers["webhook-timestamp"]
    headers["webhook-signature"] = (
        f"{wrong['webhook-signature']} v2,abc {headers['webhook-signature']}"
    )
    headers["webhook-timestamp"] = at
    assert receiver.post(body, headers).status_code == 200


def _tampered(r: Receiver) -> tuple[bytes, dict[str, str]]:
    headers = signed_headers(r.secret, event_body(1))
    return event_body(2), headers


def _other_id(r: Receiver) -> tuple[bytes, dict[str, str]]:
    body = event_body(1)
    headers = signed_headers(r.secret, body)
    headers["webhook-id"] = "msg_not_the_signed_one"
    return body, headers


def _unsigned(r: Receiver) -> tuple[bytes, dict[str, str]]:
    headers = signed_headers(r.secret, event_body(1))
    del headers["webhook-signature"]
    return event_body(1), headers


def _signed(r: Receiver, body: bytes, **kw: object) -> tuple[bytes, dict[str, str]]:
    return body, signed_headers(r.secret, body, **kw)  # type: ignore[arg-type]


REJECTIONS = {
    "wrong secret": (401, lambda r: (event_body(1), signed_headers(new_secret(), event_body(1)))),
    "tampered body": (401, _tampered),
    "id not the signed one": (401, _other_id),
    "no signature": (401, _unsigned),
    "timestamp 6 minutes old": (401, lambda r: _signed(r, event_body(1), at=old(360))),
    "timestamp 6 minutes ahead": (401, lambda r: _signed(r, event_body(1), at=old(-360))),
    "body over the limit": (413, lambda r: _signed(r, event_body(1, pad="x" * 5000))),
    "not JSON": (400, lambda r: _signed(r, b"order=1&amount=2")),
    "truncated JSON": (400, lambda r: _signed(r, event_body(1)[:-3])),
    "JSON but not an object": (400, lambda r: _signed(r, b"[1, 2, 3]")),
    "JSON nested too deep": (400, lambda r: _signed(r, b'{"a":' * 40 + b"1" + b"}" * 40)),
    "JSON deeper than the parser's stack": (400, lambda r: _signed(r, b"[" * 2000 + b"]" * 2000)),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_rejected_requests_get_their_status_and_store_nothing(
    receiver: Receiver, case: str
) -> None:
    status, build = REJECTIONS[case]
    body, headers = build(receiver)
    response = receiver.post(body, headers)
    assert response.status_code == status, response.text
    assert "error" in response.json()
    assert receiver.pending() == 0


def test_a_replay_within_tolerance_with_a_fresh_signature_is_stored_once(
    receiver: Receiver,
) -> None:
    body = event_body(7)
    for seconds_ago in (200, 10):  # a sender's retry re-signs with a new timestamp
        headers = signed_headers(receiver.secret, body, webhook_id="msg_retry", at=old(seconds_ago))
        assert receiver.post(body, headers).status_code == 200
    assert receiver.pending() == 1


def _start_post(url: str, headers: dict[str, str], framing: str) -> socket.socket:
    """Open a raw HTTP/1.1 POST whose body never ends: httpx would finish sending before
    reading the answer, so a plain socket plays a sender whose body generator stalls."""
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    length = "transfer-encoding: chunked" if framing == "chunked" else "content-length: 100000000"
    lines = ["POST /hooks/orders HTTP/1.1", f"host: {host}", length]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return conn


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_body_over_the_limit_gets_413_without_waiting_for_the_rest(
    receiver: Receiver, framing: str
) -> None:
    headers = signed_headers(receiver.secret, event_body(1))
    headers.pop("content-type")
    conn = _start_post(receiver.url, headers, framing)
    try:
        chunk = b"y" * 1024
        for _ in range(8):  # 8 KiB, twice the limit; then the sender stalls (10 s timeout)
            conn.sendall(b"400\r\n" + chunk + b"\r\n" if framing == "chunked" else chunk)
        stalled_at = time.monotonic()
        answer = b""
        while b"\r\n" not in answer:  # a receiver reading the body whole times out here
            data = conn.recv(4096)
            if not data:
                break
            answer += data
        waited = time.monotonic() - stalled_at
    finally:
        conn.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # behaviour, not speed: the answer came while the body was still open; 2 s is far
    # below the 10 s the stalled sender would have to be waited for
    assert waited < 2
    assert receiver.pending() == 0


def test_unknown_source_is_404(receiver: Receiver) -> None:
    body = event_body(1)
    response = receiver.post(body, signed_headers(receiver.secret, body), source="refunds")
    assert response.status_code == 404
    assert "refunds" in response.json()["error"]


def test_health_lists_the_sources(receiver: Receiver) -> None:
    response = httpx.get(f"{receiver.url}/health", timeout=5)
    assert response.json() == {"status": "ok", "sources": ["orders"]}


def test_accepted_body_is_kept_byte_for_byte(receiver: Receiver) -> None:
    body = json.dumps({"name": "Zoë", "nested": {"a": [1, 2]}}, indent=2).encode()
    assert receiver.post(body, signed_headers(receiver.secret, body)).status_code == 200
    assert receiver.queue.take("orders", 1)[0].body == body


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_!!notbase64", "whsec_c2hvcnQ="])
def test_bad_secrets_are_refused_with_advice(secret: str) -> None:
    with pytest.raises(SourceError, match="secret"):
        decode_secret(secret, where="sources.orders")


def test_a_queue_that_is_down_gets_503_so_the_sender_retries(tmp_path: Path) -> None:
    secret = new_secret()
    down = open_event_queue(f"redis://127.0.0.1:{free_port()}/0", prefix="fptest-down")
    app = create_receiver_app([PushEndpoint("orders", (decode_secret(secret),))], down)
    with serve_in_thread(app) as url:
        body = event_body(1)
        response = httpx.post(
            f"{url}/hooks/orders", content=body, headers=signed_headers(secret, body), timeout=10
        )
    assert response.status_code == 503
    assert "retry" in response.json()["error"]
