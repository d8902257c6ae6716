"""The flusher (queue → NDJSON batches) and the bucket reader (batches → raw table), on both
queue backends; the pipeline then types, cleans and loads the table into Delta."""

from __future__ import annotations

import json
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
    name_time_ns,
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
    assert extraction.state["loaded"] == sorted([first, "zz-again.ndjson"])

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


def test_batch_names_sort_in_the_order_the_files_were_written(tmp_path: Path) -> None:
    bucket = str(tmp_path / "bucket")
    written = []
    for i in range(200):
        before = time.time_ns()
        event = QueuedEvent("orders", f"msg_{i:05d}", utc_now(), b"{}", str(i))
        name = write_batch(bucket, "orders", [event])
        after = time.time_ns()
        at = name_time_ns(name)
        assert at is not None and before <= at <= after  # the name is the time it appeared
        written.append(name)
    assert list_batches(bucket, "orders") == written
    assert name_time_ns("zz-again.ndjson") is None


def put_batch(bucket: str, seconds_from_now: float, first_id: int, n: int = 1) -> str:
    """A batch file named at ``seconds_from_now``, as another receiver's flusher whose
    clock or upload lags would leave it; returns its name."""
    name = batch_name(time.time_ns() + int(seconds_from_now * 10**9))
    events = [
        QueuedEvent("orders", f"msg_{i:05d}", utc_now(), json.dumps({"n": i}).encode(), "")
        for i in range(first_id, first_id + n)
    ]
    folder = Path(bucket) / "orders"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(batch_lines(events))
    return name


def test_the_load_window_skips_loaded_batches_and_loads_late_ones(tmp_path: Path) -> None:
    bucket = str(tmp_path / "bucket")
    source = PushSource("orders", push_config(bucket, late_seconds=60))

    def load(state: dict) -> tuple[list[str], dict]:
        extraction = source.extract(state)
        return extraction.collect()["webhook_id"].to_list(), extraction.state

    put_batch(bucket, -120, 0)
    newest = put_batch(bucket, 0, 1)
    ids, state = load({})
    assert ids == ["msg_00000", "msg_00001"]
    assert state["loaded"] == [newest] and state["older"] == 1  # the old one is below the cutoff
    assert load(state)[0] == []  # processed batches are skipped

    put_batch(bucket, -30, 2)  # older than the newest loaded, within late_seconds
    ids, state = load(state)
    assert ids == ["msg_00002"]
    put_batch(bucket, 10, 3)
    ids, state = load(state)
    assert ids == ["msg_00003"]
    assert load(state)[0] == []


def test_the_load_window_state_stays_small_and_loses_nothing(tmp_path: Path) -> None:
    bucket = str(tmp_path / "bucket")
    source = PushSource("orders", push_config(bucket, late_seconds=60))
    state: dict = {}
    loaded: list[str] = []
    for load_number in range(10):  # 500 batches, 10 s apart by name, 50 per load
        for b in range(50):
            n = load_number * 50 + b
            put_batch(bucket, -5000 + 10 * n, n)
        extraction = source.extract(state)
        loaded += extraction.collect()["webhook_id"].to_list()
        state = extraction.state
        assert len(state["loaded"]) <= 7  # the names within 60 s of the newest, not all
    assert loaded == [f"msg_{n:05d}" for n in range(500)]
    assert state["older"] == 500 - len(state["loaded"])


def test_a_batch_later_than_the_window_is_an_error_not_a_loss(tmp_path: Path) -> None:
    bucket = str(tmp_path / "bucket")
    source = PushSource("orders", push_config(bucket, late_seconds=60))
    put_batch(bucket, 0, 0)
    extraction = source.extract({})
    extraction.collect()
    state = extraction.state
    late = put_batch(bucket, -600, 1)  # appears now, named 10 minutes back
    with pytest.raises(
        SourceError, match=r"1 batch file\(s\) named before .* late_seconds \(60 s\)"
    ):
        source.extract(state).collect()
    # the remedy the message gives: rename it after the newest loaded batch
    folder = Path(bucket) / "orders"
    (folder / late).rename(folder / batch_name())
    assert source.extract(state).collect()["webhook_id"].to_list() == ["msg_00001"]


def test_a_state_with_the_old_manifest_list_is_read(tmp_path: Path) -> None:
    bucket = str(tmp_path / "bucket")
    done = put_batch(bucket, -10, 0)
    put_batch(bucket, 0, 1)
    extraction = PushSource("orders", push_config(bucket)).extract({"manifest": [done]})
    assert extraction.collect()["webhook_id"].to_list() == ["msg_00001"]
    assert "manifest" not in extraction.state and "cutoff" in extraction.state


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
