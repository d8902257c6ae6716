"""Destinations under test: Delta and SQLite in temporary folders, PostgreSQL on 127.0.0.1
in a schema of its own per test (other developers share the server), dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from featurepipe.destinations import Destination
from tests.destinations.places import KINDS, PG_URL, make_destination, new_pg_schema

__all__ = ["KINDS", "PG_URL", "drop_pg_schema", "make_destination", "new_pg_schema"]


def drop_pg_schema(schema: str) -> None:
    """Remove a test schema and everything in it."""
    with psycopg.connect(PG_URL, autocommit=True) as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


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
