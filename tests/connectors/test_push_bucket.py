"""The flusher (queue → NDJSON batches) and the bucket reader (batches → raw table), on both
queue backends; the pipeline then types, cleans and loads the table into Delta."""

from __future__ import annotations

import json
import os
import time
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
    batch_lines,
    batch_name,
    extract_push,
    list_batches,
    write_batch,
)
from featurepipe.connectors.push_queue import EventQueue, QueuedEvent, open_event_queue, utc_now
from featurepipe.errors import SourceError
from featurepipe.ingest import COMMITTED_LOAD

from .push_support import BACKENDS, drop_redis_prefix, push_project, queue_url


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
    folder = (Path(bucket) / "orders").resolve()
    read = {str(folder / first), str(folder / "zz-again.ndjson")}
    assert set(extraction.state["manifest"]) == read

    assert source.extract(extraction.state).collect().height == 0  # nothing new
    # msg_00003 flushed again into a batch read by a later load, and one new event
    again = QueuedEvent("orders", "msg_00003", utc_now(), b'{"order": 3}', "x")
    new = QueuedEvent("orders", "msg_00004", utc_now(), b'{"order": 4}', "y")
    write_batch(bucket, "orders", [again, new])
    later = source.extract(extraction.state).collect()
    assert later["webhook_id"].to_list() == ["msg_00004"]


def push_config(bucket: str, **options: object) -> PushSourceConfig:
    return PushSourceConfig(
        kind="push",
        secrets_env=["ORDERS_SECRET"],
        bucket=bucket,
        **options,  # type: ignore[arg-type]
    )


def put_batch(bucket: str, seconds_from_now: float, first_id: int, n: int = 1) -> str:
    """A batch file named and last modified at ``seconds_from_now``, as another receiver's
    flusher whose clock or upload lags would leave it; returns its name."""
    at = time.time_ns() + int(seconds_from_now * 10**9)
    name = batch_name(at)
    events = [
        QueuedEvent("orders", f"msg_{i:05d}", utc_now(), json.dumps({"n": i}).encode(), "")
        for i in range(first_id, first_id + n)
    ]
    folder = Path(bucket) / "orders"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(batch_lines(events))
    os.utime(folder / name, ns=(at, at))
    return name


def test_a_batch_that_appears_late_is_read_exactly_once(tmp_path: Path) -> None:
    bucket = str(tmp_path / "bucket")
    source = PushSource("orders", push_config(bucket))

    def load(state: dict) -> tuple[list[str], dict]:
        extraction = source.extract(state)
        return extraction.collect()["webhook_id"].to_list(), extraction.state

    put_batch(bucket, -60, 0)
    newest = put_batch(bucket, 0, 1)
    ids, state = load({})
    assert ids == ["msg_00000", "msg_00001"]
    assert load(state)[0] == []  # nothing new: nothing extracted

    # appears now, named and modified an hour before the batches already read
    late = put_batch(bucket, -3600, 2, n=2)
    assert late < newest
    ids, state = load(state)
    assert ids == ["msg_00002", "msg_00003"]
    assert load(state)[0] == []

    # touched, not changed: not read again; another late one among 20 new ones: each once
    (Path(bucket) / "orders" / late).touch()
    for n in range(20):
        put_batch(bucket, -7200 if n == 7 else n, 4 + n)
    ids, state = load(state)
    assert sorted(ids) == [f"msg_{n:05d}" for n in range(4, 24)]
    assert load(state)[0] == []
    assert len(state["manifest"]) == len(list_batches(bucket, "orders")) == 23


def test_a_state_of_the_earlier_watermark_reader_skips_what_it_loaded(tmp_path: Path) -> None:
    bucket = str(tmp_path / "bucket")
    below = put_batch(bucket, -20, 0)
    inside = put_batch(bucket, -10, 1)
    put_batch(bucket, 0, 2)
    source = PushSource("orders", push_config(bucket))
    window = {"cutoff": inside, "loaded": [inside], "older": 1}
    assert below < inside
    extraction = source.extract(window)
    assert extraction.collect()["webhook_id"].to_list() == ["msg_00002"]
    assert len(extraction.state["manifest"]) == 3 and "cutoff" not in extraction.state
    names = PushSource("orders", push_config(bucket)).extract({"manifest": [below]})
    assert names.collect()["webhook_id"].to_list() == ["msg_00001", "msg_00002"]


def test_ingest_commits_the_manifest_with_the_load_and_a_rerun_extracts_nothing(
    tmp_path: Path,
) -> None:
    project = push_project(tmp_path)
    bucket = str(project / "bucket")
    config = fp.load_config(project)
    state_file = fp.StateStore(config.state_dir).file("orders")

    def ingest(load_id: str) -> int:
        run = fp.Ingest(config, load_id, sources=["orders"])
        frames = run.extract()
        if "orders" in frames:
            run.load("orders", frames["orders"])
        run.finish()
        return frames["orders"].height if "orders" in frames else 0

    put_batch(bucket, 0, 0, n=3)
    assert ingest("load-1") == 3
    assert fp.StateStore(config.state_dir).read("orders")[COMMITTED_LOAD] == "load-1"
    assert len(fp.StateStore(config.state_dir).read("orders")["manifest"]) == 1
    committed = state_file.read_text()
    assert ingest("load-2") == 0  # nothing new: nothing extracted, nothing loaded
    assert json.loads(state_file.read_text())["manifest"] == json.loads(committed)["manifest"]
    put_batch(bucket, -3600, 3, n=2)  # a late batch, and one event flushed again
    (Path(bucket) / "orders" / "zz-again.ndjson").write_bytes(
        batch_lines([QueuedEvent("orders", "msg_00001", utc_now(), b'{"n": 1}', "")])
    )
    assert ingest("load-3") == 2
    assert ingest("load-4") == 0
    ids = sorted(fp.read_table("orders", project=config)["webhook_id"].to_list())
    assert ids == [f"msg_{n:05d}" for n in range(5)]


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
