"""The SQL connector against real PostgreSQL, MariaDB and SQLite databases."""

from __future__ import annotations

import secrets
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from featurepipe.config import SqlSourceConfig
from featurepipe.connectors import SqlSource, extract_source
from featurepipe.errors import SourceError
from featurepipe.state import StateStore

from .conftest import Database

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _incremental(url: str, table: str, **options) -> SqlSourceConfig:
    return SqlSourceConfig(
        kind="sql",
        url=url,
        table=table,
        cursor="updated_at",
        primary_key=["id"],
        write_disposition="append",
        **options,
    )


def _ids(frame: pl.DataFrame) -> list[int]:
    return sorted(frame["id"].to_list())


def _orders(db: Database, timestamp: str) -> str:
    table = db.table("orders")
    db.execute(
        f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, updated_at {timestamp} NOT NULL, "
        "name VARCHAR(40), amount DECIMAL(10, 2))"
    )
    return table


def _insert(db: Database, table: str, ids: range, at: datetime) -> None:
    naive = db.quote == "`"  # MariaDB DATETIME has no zone
    stamp = at.replace(tzinfo=None) if naive else at
    db.execute(
        f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
        [(i, stamp + timedelta(seconds=i), f"order {i}", i * 1.5) for i in ids],
    )


@pytest.mark.parametrize(
    ("server", "timestamp"), [("postgres", "TIMESTAMPTZ(6)"), ("mariadb", "DATETIME(6)")]
)
def test_full_then_incremental_takes_only_new_and_changed_rows(
    request, tmp_path, server, timestamp
) -> None:
    db: Database = request.getfixturevalue(server)
    table = _orders(db, timestamp)
    _insert(db, table, range(1, 5001), T0)
    source = SqlSource(table, _incremental(db.url, table, batch_rows=1_000))
    store = StateStore(tmp_path)

    first = source.extract(store.read(table), load_id="L1")
    sizes = [frame.height for frame in first]
    assert sum(sizes) == 5_000 and max(sizes) <= 1_000  # bounded batches
    store.commit(table, first.state)  # (the load committed)

    later = T0 + timedelta(days=1)
    _insert(db, table, range(5001, 5101), later)
    db.execute(
        f"UPDATE {table} SET name = 'changed', updated_at = %s WHERE id <= 50",
        [(later.replace(tzinfo=None) if server == "mariadb" else later,)],
    )
    second = source.extract(store.read(table), load_id="L2").collect()
    assert _ids(second) == [*range(1, 51), *range(5001, 5101)]
    assert second.filter(pl.col("id") <= 50)["name"].unique().to_list() == ["changed"]
    assert second.schema["amount"] == pl.Decimal(38, 10) or second.schema["amount"].is_decimal()

    # the load of the second pull "crashed": nothing committed, so the rerun takes it again
    assert _ids(source.extract(store.read(table)).collect()) == _ids(second)
    third = source.extract(store.read(table))
    third.collect()
    store.commit(table, third.state)
    assert source.extract(store.read(table)).collect().height == 0  # nothing new


def test_rows_sharing_the_last_cursor_value_are_never_lost_or_doubled(postgres, tmp_path) -> None:
    table = _orders(postgres, "TIMESTAMPTZ(6)")
    postgres.execute(
        f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
        [(i, T0, f"o{i}", 1) for i in range(1, 1001)],  # 1,000 rows, one cursor value
    )
    source = SqlSource(table, _incremental(postgres.url, table, batch_rows=100))
    store = StateStore(tmp_path)
    loaded: list[int] = []

    def pull() -> int:
        extraction = source.extract(store.read(table))
        rows = [i for frame in extraction for i in frame["id"].to_list()]
        loaded.extend(rows)
        store.commit(table, extraction.state)
        return len(rows)

    assert pull() == 1_000
    assert store.read(table)["cursor"]["value"] == T0
    assert len(store.read(table)["cursor"]["rows"]) == 1_000
    # late arrivals: 250 more at the same instant, 5 later ones
    postgres.execute(
        f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
        [(i, T0, f"late {i}", 1) for i in range(1001, 1251)]
        + [(i, T0 + timedelta(microseconds=1), f"next {i}", 1) for i in range(1251, 1256)],
    )
    assert pull() == 255
    postgres.execute(
        f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
        [(i, T0 + timedelta(microseconds=1), f"again {i}", 1) for i in range(1256, 1300)],
    )
    assert pull() == 44
    assert pull() == 0
    assert sorted(loaded) == list(range(1, 1300))  # 0 missed, 0 duplicated


def test_query_source_on_sqlite_with_a_text_cursor(tmp_path) -> None:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE events (id INTEGER, at TEXT, kind TEXT)")
        con.executemany(
            "INSERT INTO events VALUES (?, ?, ?)",
            [(i, f"2026-01-0{1 + i % 3}", "click" if i % 2 else "view") for i in range(30)],
        )
    config = SqlSourceConfig(
        kind="sql",
        url=f"sqlite:///{path}",
        query="SELECT id, at FROM events WHERE kind = 'click';",
        cursor="at",
        primary_key=["id"],
        write_disposition="append",
    )
    first = extract_source("events", config)
    assert first.collect().height == 15
    assert first.state["cursor"]["value"] == "2026-01-03"
    assert first.lineage.locations == (f"sqlite://{path} query",)
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO events VALUES (99, '2026-01-03', 'click')")
    assert _ids(extract_source("events", config, first.state).collect()) == [99]


def test_credentials_come_from_the_environment_and_never_show(
    mariadb, monkeypatch, tmp_path
) -> None:
    table = _orders(mariadb, "DATETIME(6)")
    config = SqlSourceConfig(
        kind="sql",
        url="mysql://root@127.0.0.1:3306/test",
        password_env="FP_TEST_DB_PASSWORD",  # noqa: S106 (the variable's name)
        table=table,
    )
    with pytest.raises(SourceError, match=r"FP_TEST_DB_PASSWORD is not set"):
        extract_source("orders", config).collect()
    monkeypatch.setenv("FP_TEST_DB_PASSWORD", "s3cr3t-Pa55")
    started = time.monotonic()
    with pytest.raises(SourceError) as err:
        extract_source("orders", config).collect()
    assert time.monotonic() - started < 20  # a clear answer, not connectorx's 30 s of retries
    message = str(err.value)
    assert "source 'orders': cannot connect to mysql://root:***@127.0.0.1:3306/test" in message
    assert "Access denied" in message and "$FP_TEST_DB_PASSWORD" in message
    assert "s3cr3t" not in message and "s3cr3t" not in repr(err.value.__cause__)
    assert StateStore(tmp_path).sources() == []


def test_a_password_from_the_environment_reads_and_stays_out_of_lineage_and_state(
    mariadb, monkeypatch, tmp_path
) -> None:
    table = _orders(mariadb, "DATETIME(6)")
    _insert(mariadb, table, range(1, 4), T0)
    user, password = f"fp_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}"
    mariadb.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'")
    try:
        mariadb.execute(f"GRANT SELECT ON test.{table} TO '{user}'@'127.0.0.1'")
        monkeypatch.setenv("FP_TEST_DB_PASSWORD", password)
        config = _incremental(
            f"mysql://{user}@127.0.0.1:3306/test",
            table,
            password_env="FP_TEST_DB_PASSWORD",  # noqa: S106 (the variable's name)
        )
        extraction = extract_source("orders", config)
        assert _ids(extraction.collect()) == [1, 2, 3]
        assert extraction.lineage.locations == (f"mysql://{user}:***@127.0.0.1:3306/test {table}",)
        file = StateStore(tmp_path).commit("orders", extraction.state)
        assert password not in file.read_text()
    finally:
        mariadb.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def test_bad_databases_are_clear_errors(postgres, tmp_path) -> None:
    def fails(match: str, **options) -> None:
        config = SqlSourceConfig(kind="sql", **options)
        with pytest.raises(SourceError, match=match):
            extract_source("orders", config).collect()

    fails(
        r"source 'orders': cannot connect to postgresql://postgres@127.0.0.1:1/test: .*"
        r"server is running",
        url="postgresql://postgres@127.0.0.1:1/test",
        table="orders",
    )
    missing = postgres.table("missing")
    fails(
        rf"source 'orders': cannot read .*{missing}: .*does not exist; check "
        r"`sources.orders.table`",
        url=postgres.url,
        table=missing,
    )
    fails(
        r"SQLite database file not found: .*nope\.db",
        url=f"sqlite:///{tmp_path}/nope.db",
        table="t",
    )
    fails(r"unsupported database URL scheme 'oracle'", url="oracle://h/db", table="t")
