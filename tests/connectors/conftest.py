"""Real databases for the connector tests: PostgreSQL and MariaDB on 127.0.0.1.

Other test runs share these servers, so every table gets a random suffix and is dropped.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pymysql
import pytest

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql://root@127.0.0.1:3306/test"


class Database:
    """A connection to one real database plus the tables a test made there."""

    def __init__(self, url: str, connection: Any, quote: str) -> None:
        self.url = url
        self.connection = connection
        self.quote = quote
        self.tables: list[str] = []

    def table(self, stem: str) -> str:
        name = f"{stem}_{secrets.token_hex(4)}"
        self.tables.append(name)
        return name

    def execute(self, sql: str, rows: list[tuple[Any, ...]] | None = None) -> None:
        with self.connection.cursor() as cursor:
            if rows is None:
                cursor.execute(sql)
            else:
                cursor.executemany(sql, rows)
        self.connection.commit()

    def drop_all(self) -> None:
        for name in self.tables:
            self.execute(f"DROP TABLE IF EXISTS {self.quote}{name}{self.quote}")


def _database(factory: Callable[[], Database]) -> Iterator[Database]:
    try:
        db = factory()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"database not reachable ({exc}); run `make services` first")
    try:
        yield db
    finally:
        db.drop_all()
        db.connection.close()


@pytest.fixture
def postgres() -> Iterator[Database]:
    """The test database on the local PostgreSQL (trust auth, user postgres)."""
    yield from _database(lambda: Database(PG_URL, psycopg.connect(PG_URL), '"'))


@pytest.fixture
def mariadb() -> Iterator[Database]:
    """The test database on the local MariaDB (root, empty password)."""
    yield from _database(
        lambda: Database(
            MARIADB_URL,
            pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database="test"),
            "`",
        )
    )
