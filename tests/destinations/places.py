"""Where test destinations live: Delta and SQLite in a folder, PostgreSQL on 127.0.0.1 in a
schema of its own. Imports no pytest and no psycopg, so the crash loader starts fast."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from featurepipe.destinations import Destination, open_destination

KINDS = ["delta", "postgres", "sqlite"]
PG_URL = os.environ.get("FEATUREPIPE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def new_pg_schema() -> str:
    """A schema name no other test uses."""
    return f"fp_test_{secrets.token_hex(4)}"


def make_destination(kind: str, folder: Path, pg_schema: str = "") -> Destination:
    """A destination of one kind: in ``folder`` (Delta, SQLite) or ``pg_schema`` (PostgreSQL)."""
    if kind == "sqlite":
        return open_destination("sqlite", path=folder / "warehouse.sqlite")
    if kind == "postgres":
        return open_destination("postgres", url=PG_URL, schema=pg_schema or new_pg_schema())
    return open_destination("delta", path=folder / "warehouse")
