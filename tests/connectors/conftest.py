"""Real databases for the connector tests: PostgreSQL and MariaDB on 127.0.0.1.

Other test runs share these servers, so every table gets a random suffix and is dropped.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
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


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Path]:
    """Gives a project an empty, already migrated MLflow store as its ``mlflow.db``.

    A new sqlite store runs MLflow's ~90 migrations: 1-2 s of CPU, and on a busy disk
    ~6 s of fsyncs. The store is made once per session by MLflow itself and copied.
    """
    from mlflow.tracking import MlflowClient

    store = tmp_path_factory.mktemp("mlflow_store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()

    def seed(project: Path) -> Path:
        shutil.copyfile(store, project / "mlflow.db")
        return project

    return seed
