"""``featurepipe serve`` as a user runs it: config errors, a signed event end to end into the
warehouse, and a SIGTERM that drains (a request in flight is answered and flushed) and exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import featurepipe as fp
from featurepipe.config import PushSourceConfig, load_config
from featurepipe.connectors.push_bucket import extract_push
from featurepipe.errors import ConfigError

from ..conftest import run_cli
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


def test_serve_without_the_secret_variable_exits_2_naming_it(tmp_path: Path) -> None:
    project = push_project(tmp_path)
    env_has_it = "ORDERS_SECRET" in os.environ
    assert not env_has_it
    result = run_cli("serve", "-C", str(project), "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 2
    assert "ORDERS_SECRET" in result.stderr and "sources.orders" in result.stderr


def test_serve_without_push_sources_exits_2(tmp_path: Path) -> None:
    (tmp_path / "featurepipe.toml").write_text(
        (Path(__file__).resolve().parents[2] / "featurepipe.toml").read_text()
    )
    result = run_cli("serve", "-C", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert 'kind = "push"' in result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"write_disposition": "replace"}, "sources.orders: Value error, a push source"),
        ({"flush_size": 0}, "sources.orders.flush_size"),
        ({"secrets_env": []}, "sources.orders.secrets_env"),
    ],
)
def test_bad_push_options_name_the_key(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(push_project(tmp_path, **options))


@pytest.fixture(params=BACKENDS)
def queue_options(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The ``queue`` and ``queue_prefix`` options of a push source, for each backend."""
    url, prefix = queue_url(request.param, tmp_path)
    yield {"queue": url, "queue_prefix": prefix}
    if request.param == "redis":
        drop_redis_prefix(prefix)


def test_push_source_defaults_and_paths(tmp_path: Path) -> None:
    project = push_project(tmp_path)
    source = load_config(project).sources["orders"]
    assert isinstance(source, PushSourceConfig)
    assert source.bucket == str(project.resolve() / "bucket")
    assert source.queue == f"sqlite:///{project.resolve() / 'push-queue.db'}"
    assert source.primary_key == ["webhook_id"] and source.write_disposition == "merge"
    assert source.columns["received_at"].type == "datetime"


def test_signed_event_reaches_the_warehouse_and_sigterm_drains(
    tmp_path: Path, queue_options: dict[str, str]
) -> None:
    secret = new_secret()
    project = push_project(tmp_path, flush_age=3600, **queue_options)  # only shutdown flushes
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "featurepipe", "serve", "-C", str(project), "--port", str(port)],
            env={**os.environ, "ORDERS_SECRET": secret},
            stdout=out,
            stderr=out,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url)
        for n in range(3):
            body = event_body(n, customer={"id": n})
            response = httpx.post(
                f"{url}/hooks/orders", content=body, headers=signed_headers(secret, body)
            )
            assert response.status_code == 200
        assert not (project / "bucket").exists()  # still in the queue
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)

    config = load_config(project)
    source = config.sources["orders"]
    state = fp.StateStore(config.path(config.destination.path))
    extraction = fp.extract_source("orders", source, state.read("orders"), load_id="l1")
    raw = extraction.collect()
    typed = fp.apply_schema("orders", raw, source.columns, source.null_values)
    assert typed.rows_quarantined == 0
    cleaned = fp.clean_table("orders", typed.frame, source.primary_key)
    warehouse = fp.DeltaDestination(config.path(config.destination.path))
    warehouse.write("orders", cleaned.frame, load_id="l1", **config.load_options("orders"))
    state.commit("orders", extraction.state)
    table, _version = warehouse.read("orders")
    loaded = table.collect().sort("order")
    assert loaded["order"].to_list() == [0, 1, 2]
    assert loaded["customer"].to_list() == [{"id": 0}, {"id": 1}, {"id": 2}]  # JSON text typed
    assert loaded.schema["received_at"].is_temporal()
    again = fp.extract_source("orders", source, state.read("orders"), load_id="l2").collect()
    assert again.height == 0  # the manifest holds the batch file already loaded


def test_serve_on_a_port_in_use_exits_1_with_advice(tmp_path: Path) -> None:
    import socket

    project = push_project(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "featurepipe", "serve", "-C", str(project), "--port", str(port)],
            env={**os.environ, "ORDERS_SECRET": new_secret()},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert "--port" in result.stderr and str(port) in result.stderr


def test_sigterm_during_a_slow_request_answers_it_then_flushes_it(
    tmp_path: Path, queue_options: dict[str, str]
) -> None:
    secret = new_secret()
    project = push_project(tmp_path, flush_age=3600, **queue_options)  # only shutdown flushes
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "featurepipe", "serve", "-C", str(project), "--port", str(port)],
            env={**os.environ, "ORDERS_SECRET": secret},
            stdout=out,
            stderr=out,
        )
    body = event_body(42, note="sent slowly")
    headers = signed_headers(secret, body, webhook_id="msg_in_flight")
    first_part_sent = threading.Event()
    answers: list[httpx.Response | BaseException] = []

    def slow_body() -> Iterator[bytes]:
        yield body[:10]
        first_part_sent.set()
        time.sleep(2)  # the SIGTERM arrives while the rest is still on its way
        yield body[10:]

    def post() -> None:
        try:
            answers.append(
                httpx.post(
                    f"http://127.0.0.1:{port}/hooks/orders",
                    content=slow_body(),
                    headers=headers,
                    timeout=30,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            answers.append(exc)

    try:
        wait_until_up(f"http://127.0.0.1:{port}")
        sender = threading.Thread(target=post)
        sender.start()
        assert first_part_sent.wait(10)
        time.sleep(0.2)  # the request head and first bytes have reached the receiver
        process.send_signal(signal.SIGTERM)
        sender.join(30)
        assert process.wait(30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    [answer] = answers
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 200 and answer.json()["accepted"] == "msg_in_flight"
    frame = extract_push("orders", str(project / "bucket"))
    assert frame["webhook_id"].to_list() == ["msg_in_flight"]
    assert frame["note"].to_list() == ["sent slowly"]
