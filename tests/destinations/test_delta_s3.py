"""The Delta destination on an ``s3://`` warehouse: moto's S3-compatible server on
127.0.0.1 (no AWS involved), the same loads, replays and pinned reads as a local folder."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import date

import boto3
import polars as pl
import pytest

from featurepipe.destinations import LOAD_ID, LOADED_AT, DeltaDestination
from featurepipe.errors import DestinationError
from tests.connectors.push_support import free_port


@pytest.fixture
def s3_warehouse() -> Iterator[DeltaDestination]:
    """A Delta warehouse in a fresh bucket on a moto server of the test's own."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    bucket = f"warehouse-{secrets.token_hex(4)}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **credentials)
    s3.create_bucket(Bucket=bucket)
    try:
        yield DeltaDestination(
            f"s3://{bucket}/warehouse",
            storage_options={
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1",
                "AWS_ALLOW_HTTP": "true",
                # moto has no DynamoDB lock here; one writer per table in this test
                "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
            },
        )
    finally:
        server.stop()


def _rows(warehouse: DeltaDestination, version: int | None = None) -> list[tuple]:
    frame, _ = warehouse.read("t", version)
    return frame.collect().drop(LOAD_ID, LOADED_AT).sort("k").rows()


def test_loads_replays_and_pinned_reads_round_trip_through_s3(s3_warehouse) -> None:
    warehouse = s3_warehouse
    assert warehouse.version("t") is None
    first = pl.DataFrame({"k": [1, 2], "v": ["a", "b"]}, schema={"k": pl.Int32, "v": pl.String})
    v0 = warehouse.write("t", first, load_id="L1", mode="append", source="src").version
    replay = warehouse.write("t", first, load_id="L1", mode="append", source="src")
    assert replay.skipped and replay.version == v0
    merged = pl.DataFrame({"k": [2, 3], "v": ["B", "c"], "d": [date(2024, 1, 1), None]})
    v1 = warehouse.write("t", merged, load_id="L2", mode="merge", primary_key=["k"]).version
    assert _rows(warehouse) == [(1, "a", None), (2, "B", date(2024, 1, 1)), (3, "c", None)]
    assert warehouse.read("t")[0].collect_schema()["k"] == pl.Int64  # widened from Int32
    assert _rows(warehouse, v0) == [(1, "a"), (2, "b")]
    v2 = warehouse.write("t", pl.DataFrame({"k": [9], "v": ["z"]}), load_id="L3").version
    assert (v0, v1, v2) == (0, 1, 2) and warehouse.versions(["t"]) == {"t": 2}
    assert [r[:2] for r in _rows(warehouse)] == [(9, "z")]
    assert _rows(warehouse, v1)[0] == (1, "a", None)
    loads = warehouse.loads()
    assert loads.select("load_id", "table", "rows", "disposition", "version").rows() == [
        ("L1", "t", 2, "append", 0), ("L2", "t", 2, "merge", 1), ("L3", "t", 1, "replace", 2)
    ]  # fmt: skip
    assert warehouse.location("t") == f"{warehouse.path}/t"
    with pytest.raises(DestinationError, match="only supported locally"):
        warehouse.tables()
