"""Destinations under test: Delta and SQLite in temporary folders, PostgreSQL on 127.0.0.1
in a schema of its own per test (other developers share the server), dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from featurepipe.destinations import Destination, open_destination

KINDS = ["delta", "postgres", "sqlite"]
PG_URL = os.environ.get("FEATUREPIPE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def new_pg_schema() -> str:
    """A schema name no other test uses."""
    return f"fp_test_{secrets.token_hex(4)}"


def drop_pg_schema(schema: str) -> None:
    """Remove a test schema and everything in it."""
    with psycopg.connect(PG_URL, autocommit=True) as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def make_destination(kind: str, folder: Path, pg_schema: str = "") -> Destination:
    """A fresh, empty destination of one kind."""
    if kind == "sqlite":
        return open_destination("sqlite", path=folder / "warehouse.sqlite")
    if kind == "postgres":
        return open_destination("postgres", url=PG_URL, schema=pg_schema or new_pg_schema())
    return open_destination("delta", path=folder / "warehouse")


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A PostgreSQL schema of the test's own, dropped afterwards."""
    schema = new_pg_schema()
    yield schema
    drop_pg_schema(schema)


@pytest.fixture(params=KINDS)
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Destination]:
    """Each destination kind, empty."""
    schema = new_pg_schema()
    yield make_destination(request.param, tmp_path, schema)
    if request.param == "postgres":
        drop_pg_schema(schema)
