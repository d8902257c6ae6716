"""The flusher (queue → NDJSON batches) and the bucket reader (batches → raw table), on both
queue backends; the pipeline then types, cleans and loads the table into Delta."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

import featurepipe as fp
from featurepipe.config import ColumnHint, PushSourceConfig
from featurepipe.connectors.push_bucket import (
    RECEIVED_AT_FORMAT,
    BatchFlusher,
    PushSource,
    extract_push,
    list_batches,
    write_batch,
)
from featurepipe.connectors.push_queue import EventQueue, QueuedEvent, open_event_queue, utc_now
from featurepipe.errors import SourceError

from .push_support import BACKENDS, drop_redis_prefix, queue_url


@pytest.fixture(params=BACKENDS)
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventQueue]:
    url, prefix = queue_url(request.param, tmp_path)
    q = open_event_queue(url, prefix=prefix)
    yield q
    q.close()
    if request.param == "redis":
        drop_redis_prefix(prefix)


def put_events(queue: EventQueue, n: int, *, start: int = 0, age_seconds: float = 0) -> None:
    at = utc_now() - timedelta(seconds=age_seconds)
    for i in range(start, start + n):
        body = json.dumps({"order": i, "amount": i / 2, "tags": ["a", i], "ok": i % 2 == 0})
        queue.put("orders", f"msg_{i:05d}", at, body.encode())


def test_flushes_by_size_then_by_age_and_acks_only_what_was_written(
    queue: EventQueue, tmp_path: Path
) -> None:
    bucket = str(tmp_path / "bucket")
    flusher = BatchFlusher(queue, bucket, ["orders"], flush_size=10, flush_age_seconds=60)
    put_events(queue, 25)
    assert flusher.flush_source("orders") == 10
    assert flusher.flush_source("orders") == 10
    assert flusher.flush_source("orders") == 0  # 5 young events wait for more or for age
    assert queue.pending("orders") == 5  # type: ignore[attr-defined]
    aged = BatchFlusher(queue, bucket, ["orders"], flush_size=10, flush_age_seconds=0)
    assert aged.flush_source("orders") == 5
    assert queue.pending("orders") == 0  # type: ignore[attr-defined]
    names = list_batches(bucket, "orders")
    assert len(names) == 3
    assert not [p for p in (tmp_path / "bucket" / "orders").iterdir() if p.name.startswith(".")]
    lines = [
        json.loads(line)
        for n in names
        for line in (Path(bucket) / "orders" / n).read_text().splitlines()
    ]
    assert [e["webhook_id"] for e in lines] == [f"msg_{i:05d}" for i in range(25)]
    assert lines[3]["payload"] == {"order": 3, "amount": 1.5, "tags": ["a", 3], "ok": False}


def test_a_failed_write_leaves_every_event_in_the_queue(queue: EventQueue, tmp_path: Path) -> None:
    blocker = tmp_path / "bucket"
    blocker.write_text("a file where the bucket folder should be")
    put_events(queue, 3)
    flusher = BatchFlusher(queue, str(blocker), ["orders"], flush_size=2)
    with pytest.raises(SourceError, match="cannot write a batch"):
        flusher.flush_source("orders")
    assert queue.pending("orders") == 3  # type: ignore[attr-defined]


def test_stop_drains_the_queue(queue: EventQueue, tmp_path: Path) -> None:
    bucket = str(tmp_path / "bucket")
    flusher = BatchFlusher(queue, bucket, ["orders"], flush_size=1000, flush_age_seconds=3600)
    flusher.start()
    put_events(queue, 7)
    flusher.stop()
    assert queue.pending("orders") == 0  # type: ignore[attr-defined]
    assert extract_push("orders", bucket).height == 7


def test_reader_keeps_lineage_dedupes_and_skips_processed_batches(
    queue: EventQueue, tmp_path: Path
) -> None:
    bucket = str(tmp_path / "bucket")
    flusher = BatchFlusher(queue, bucket, ["orders"], flush_size=4)
    put_events(queue, 4)
    flusher.flush_all()
    first = list_batches(bucket, "orders")[0]
    # the same batch again, as after a crash between writing a batch and acking it
    (Path(bucket) / "orders" / "zz-again.ndjson").write_bytes(
        (Path(bucket) / "orders" / first).read_bytes()
    )
    source = PushSource("orders", push_config(bucket))
    extraction = source.extract({})
    frame = extraction.collect()
    assert frame.height == 4
    assert frame.columns[:2] == ["webhook_id", "received_at"]
    assert set(frame.schema.values()) == {pl.String}
    row = frame.row(1, named=True)
    assert row["tags"] == '["a",1]' and row["ok"] == "false" and row["amount"] == "0.5"
    assert extraction.state["manifest"] == sorted([first, "zz-again.ndjson"])

    assert source.extract(extraction.state).collect().height == 0  # nothing new
    # msg_00003 flushed again into a batch read by a later load, and one new event
    again = QueuedEvent("orders", "msg_00003", utc_now(), b'{"order": 3}', "x")
    new = QueuedEvent("orders", "msg_00004", utc_now(), b'{"order": 4}', "y")
    write_batch(bucket, "orders", [again, new])
    later = source.extract(extraction.state).collect()
    assert later["webhook_id"].to_list() == ["msg_00004"]


def push_config(bucket: str) -> PushSourceConfig:
    return PushSourceConfig(kind="push", secrets_env=["ORDERS_SECRET"], bucket=bucket)


def test_a_line_that_is_not_an_event_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "bucket" / "orders"
    folder.mkdir(parents=True)
    (folder / "20260101T000000Z-x.ndjson").write_text('{"webhook_id": "a"}\n')
    with pytest.raises(SourceError, match=r"20260101T000000Z-x.ndjson line 1"):
        extract_push("orders", str(tmp_path / "bucket"))


def test_an_empty_bucket_reads_as_an_empty_table(tmp_path: Path) -> None:
    frame = extract_push("orders", str(tmp_path / "nothing"))
    assert frame.height == 0 and frame.columns == ["webhook_id", "received_at"]


def test_object_store_through_fsspec(queue: EventQueue) -> None:
    # any fsspec filesystem works; s3:// against a real S3 API is tested below
    bucket = f"memory://fp-test-{uuid.uuid4().hex[:8]}"  # one filesystem per process
    put_events(queue, 5)
    BatchFlusher(queue, bucket, ["orders"], flush_size=2).flush_all()
    assert len(list_batches(bucket, "orders")) == 3
    assert extract_push("orders", bucket).height == 5


def test_pushed_events_are_typed_cleaned_and_loaded(queue: EventQueue, tmp_path: Path) -> None:
    bucket = str(tmp_path / "bucket")
    put_events(queue, 6)
    BatchFlusher(queue, bucket, ["orders"], flush_size=4).flush_all()
    raw = extract_push("orders", bucket)
    typed = fp.apply_schema(
        "orders", raw, {"received_at": ColumnHint(type="datetime", format=RECEIVED_AT_FORMAT)}, [""]
    )
    assert typed.frame.schema["order"].is_integer()
    assert typed.frame.schema["received_at"].is_temporal()
    cleaned = fp.clean_table("orders", typed.frame, ["webhook_id"])
    warehouse = fp.DeltaDestination(tmp_path / "warehouse")
    warehouse.write("orders", cleaned.frame, load_id="load-1", mode="append")
    loaded, _version = warehouse.read("orders")
    assert sorted(loaded.collect()["order"].to_list()) == list(range(6))


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on 127.0.0.1 (moto's server), for the s3:// bucket through s3fs."""
    from moto.server import ThreadedMotoServer

    from .push_support import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_s3_bucket_through_fsspec(
    queue: EventQueue, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"fp-push-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    options = {"endpoint_url": s3_endpoint}
    put_events(queue, 5)
    BatchFlusher(
        queue, f"s3://{name}/landing", ["orders"], flush_size=2, storage_options=options
    ).flush_all()
    assert queue.pending("orders") == 0  # type: ignore[attr-defined]
    assert len(list_batches(f"s3://{name}/landing", "orders", options)) == 3
    frame = extract_push("orders", f"s3://{name}/landing", storage_options=options)
    assert sorted(frame["webhook_id"]) == [f"msg_{i:05d}" for i in range(5)]
