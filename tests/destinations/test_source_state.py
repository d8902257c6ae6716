"""A source's state commits with its load, extraction times reach the loads table, and loads
tables made before these columns existed are upgraded in place."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import psycopg
import pytest

from featurepipe.destinations import LOADS_TABLE, DeltaDestination, Destination, open_destination
from featurepipe.errors import DestinationError

from .conftest import PG_URL


def test_state_commits_with_the_load_and_extracted_at_is_recorded(
    destination: Destination,
) -> None:
    assert destination.committed_state("t") is None
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    destination.write(
        "t", pl.DataFrame({"k": [1]}), load_id="L1", mode="append", extracted_at=at,
        source_state='{"cursor": 1}',
    )  # fmt: skip
    destination.write(
        "t", pl.DataFrame({"k": [2]}), load_id="L2", mode="append",
        extracted_at=at + timedelta(hours=1), source_state='{"cursor": 2}',
    )  # fmt: skip
    state = destination.committed_state("t")
    assert state is not None and (state.load_id, state.state) == ("L2", '{"cursor": 2}')

    # a replay of L1 changes nothing; a load without state leaves the last state in place
    again = destination.write(
        "t", pl.DataFrame({"k": [1]}), load_id="L1", mode="append", source_state='{"x": 0}'
    )
    assert again.skipped
    destination.write("t", pl.DataFrame({"k": [3]}), load_id="L3", mode="append")
    state = destination.committed_state("t")
    assert state is not None and state.load_id == "L2"
    assert destination.committed_state("other") is None

    loads = destination.loads().sort("version")
    assert loads["load_id"].to_list() == ["L1", "L2", "L3"]
    assert loads["extracted_at"].to_list() == [at, at + timedelta(hours=1), None]
    assert loads.schema["extracted_at"] == pl.Datetime("us", "UTC")


def test_delta_records_a_load_whose_loads_row_a_crash_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delta = DeltaDestination(tmp_path / "warehouse")
    at = datetime(2026, 3, 1, tzinfo=UTC)
    delta.write("t", pl.DataFrame({"k": [1, 2]}), load_id="L1", mode="append", source="t")

    def crash(*args: object) -> None:
        raise DestinationError("crash after the data commit")

    with monkeypatch.context() as patch:
        patch.setattr(DeltaDestination, "_record", crash)
        with pytest.raises(DestinationError, match="crash after"):
            delta.write(
                "t", pl.DataFrame({"k": [3]}), load_id="L2", mode="append", extracted_at=at,
                source_state='{"cursor": 3}',
            )  # fmt: skip
    assert delta.loads()["load_id"].to_list() == ["L1"]  # the data committed, its row did not
    state = delta.committed_state("t")
    assert state is not None and (state.load_id, state.state) == ("L2", '{"cursor": 3}')
    loads = delta.loads().filter(pl.col("load_id") == "L2")
    assert loads.select("source", "rows", "disposition", "extracted_at").rows() == [
        ("t", 1, "append", at)
    ]


_OLD_SQLITE_LOADS = f"""CREATE TABLE {LOADS_TABLE} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, load_id TEXT NOT NULL, source TEXT NOT NULL,
    table_name TEXT NOT NULL, rows INTEGER NOT NULL, schema_version TEXT NOT NULL,
    disposition TEXT NOT NULL, state TEXT NOT NULL, loaded_at TEXT NOT NULL,
    UNIQUE (table_name, load_id))"""


_OLD_PG_META = """CREATE TABLE "{schema}"._fp_loads (
    seq bigserial PRIMARY KEY, load_id text NOT NULL, source text NOT NULL,
    table_name text NOT NULL, rows bigint NOT NULL, schema_version text NOT NULL,
    disposition text NOT NULL, state text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(), UNIQUE (table_name, load_id));
CREATE TABLE "{schema}"._fp_tables (table_name text PRIMARY KEY, schema bytea NOT NULL);"""


def test_older_loads_tables_gain_the_new_columns(tmp_path: Path, pg_schema: str) -> None:
    """Destinations made before extracted_at and source_state existed keep working."""
    at = datetime(2026, 3, 1, tzinfo=UTC)
    file = tmp_path / "old.sqlite"
    with sqlite3.connect(file) as db:
        db.execute(_OLD_SQLITE_LOADS)
        db.execute(
            f"INSERT INTO {LOADS_TABLE} (load_id, source, table_name, rows, schema_version, "
            "disposition, state, loaded_at) VALUES ('L0', 's', 'gone', 0, '', 'append', "
            "'committed', '2026-01-01T00:00:00+00:00')"
        )
    with psycopg.connect(PG_URL, autocommit=True) as db:
        db.execute(f'CREATE SCHEMA "{pg_schema}"')
        db.execute(_OLD_PG_META.format(schema=pg_schema))
    old_delta = tmp_path / "warehouse"
    pl.DataFrame(
        {"load_id": ["L0"], "table": ["gone"], "loaded_at": [at]},
        schema={"load_id": pl.String, "table": pl.String, "loaded_at": pl.Datetime("us", "UTC")},
    ).write_delta(old_delta / LOADS_TABLE)
    destinations = [
        open_destination("sqlite", path=file),
        open_destination("postgres", url=PG_URL, schema=pg_schema),
        open_destination("delta", path=old_delta),
    ]
    for destination in destinations:
        assert destination.committed_state("t") is None
        destination.write(
            "t", pl.DataFrame({"k": [1]}), load_id="L1", mode="append", extracted_at=at,
            source_state="{}",
        )  # fmt: skip
        state = destination.committed_state("t")
        assert state is not None and state.load_id == "L1", destination.kind
        loads = destination.loads().filter(pl.col("load_id") == "L1")
        assert loads["extracted_at"].to_list() == [at], destination.kind
