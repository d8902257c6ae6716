"""Bad input and broken destinations: a clear error, and the destination left as it was."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest

from featurepipe.destinations import LOAD_ID, open_destination
from featurepipe.errors import DestinationError
from tests.destinations.conftest import PG_URL, make_destination

SMALL = pl.DataFrame({"k": [1, 2], "v": ["a", "b"]})


def test_unreachable_postgres_is_a_clear_error() -> None:
    closed = open_destination(
        "postgres", url="postgresql://postgres@127.0.0.1:1/test", schema="x", connect_timeout=2
    )
    with pytest.raises(DestinationError, match=r"cannot connect to PostgreSQL at .*127\.0\.0\.1:1"):
        closed.write("t", SMALL, load_id="L")
    with pytest.raises(DestinationError, match="is the server running"):
        closed.read("t")


@pytest.fixture
def pg_role() -> Iterator[str]:
    """A login role with no privilege to create anything in database ``test``."""
    role = f"fp_test_role_{secrets.token_hex(4)}"
    with psycopg.connect(PG_URL, autocommit=True) as db:
        db.execute(f'CREATE ROLE "{role}" LOGIN')
        db.execute(f'REVOKE CREATE ON DATABASE test FROM "{role}"')
    yield role
    with psycopg.connect(PG_URL, autocommit=True) as db:
        db.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_permission_denied_names_the_schema_and_writes_nothing(pg_role, pg_schema) -> None:
    url = PG_URL.replace("postgres@", f"{pg_role}@", 1)
    denied = open_destination("postgres", url=url, schema=pg_schema)
    with pytest.raises(DestinationError, match=f"schema '{pg_schema}': permission denied.*grant"):
        denied.write("t", SMALL, load_id="L")
    owner = open_destination("postgres", url=PG_URL, schema=pg_schema)
    assert owner.tables() == [] and owner.loads().height == 0


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: a real 'no space left on device' (needs root; skipped without)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("kind", ["delta", "sqlite"])
def test_disk_full_leaves_the_table_as_it_was(kind: str, tiny_disk: Path) -> None:
    destination = make_destination(kind, tiny_disk)
    destination.write("t", SMALL, load_id="L1", mode="append")
    # about 8 MB of text that does not compress: four times the free space
    big = pl.DataFrame({"k": range(2000), "v": [secrets.token_hex(2000) for _ in range(2000)]})
    with pytest.raises(DestinationError, match=r"table 't'.*(No space|full|disk)"):
        destination.write("t", big, load_id="L2", mode="append")
    frame, _ = destination.read("t")
    assert frame.collect().drop(LOAD_ID, "_fp_loaded_at").sort("k").equals(SMALL)
    assert destination.loads()["load_id"].to_list() == ["L1"]
