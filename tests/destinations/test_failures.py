"""Bad input and broken destinations: a clear error, and the destination left as it was."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import psycopg
import pytest

from featurepipe.destinations import DISPOSITIONS, LOAD_ID, Destination, open_destination
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
        db.execute(f'DROP OWNED BY "{role}"')  # grants on schemas other tests made
        db.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_permission_denied_names_the_schema_and_writes_nothing(pg_role, pg_schema) -> None:
    url = PG_URL.replace("postgres@", f"{pg_role}@", 1)
    denied = open_destination("postgres", url=url, schema=pg_schema)
    with pytest.raises(DestinationError, match=f"schema '{pg_schema}': permission denied.*grant"):
        denied.write("t", SMALL, load_id="L")
    owner = open_destination("postgres", url=PG_URL, schema=pg_schema)
    assert owner.tables() == [] and owner.loads().height == 0


def _snapshot(destination: Destination) -> tuple[pl.DataFrame, list[str]]:
    """A table's rows and the loads table's load ids, to show that nothing changed."""
    rows = destination.read("t")[0].collect().sort("k")
    return rows, destination.loads()["load_id"].to_list()


def _try_every_disposition(destination: Destination, match: str) -> None:
    """Each disposition fails with an error matching ``match``."""
    batch = pl.DataFrame({"k": [2, 3], "v": ["B", "c"]})
    for mode in DISPOSITIONS:
        with pytest.raises(DestinationError, match=match):
            destination.write(
                "t", batch, load_id=f"L-{mode}", mode=mode,  # type: ignore[arg-type]
                primary_key=["k"] if mode == "merge" else (),
            )  # fmt: skip


def test_permission_denied_on_a_populated_table_changes_nothing(pg_role, pg_schema) -> None:
    owner = open_destination("postgres", url=PG_URL, schema=pg_schema)
    owner.write("t", SMALL, load_id="L1", mode="append")
    before = _snapshot(owner)
    with psycopg.connect(PG_URL, autocommit=True) as db:  # read, but not write
        db.execute(f'GRANT USAGE ON SCHEMA "{pg_schema}" TO "{pg_role}"')
        db.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{pg_schema}" TO "{pg_role}"')
    reader = open_destination(
        "postgres", url=PG_URL.replace("postgres@", f"{pg_role}@", 1), schema=pg_schema
    )
    assert _snapshot(reader)[0].equals(before[0])  # reading is allowed
    _try_every_disposition(reader, f"schema '{pg_schema}': permission denied.*owns")
    after = _snapshot(owner)
    assert after[0].equals(before[0]) and after[1] == before[1] == ["L1"]


@contextmanager
def _tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs mounted at ``mount`` (needs root; the test is skipped without)."""
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
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
def test_read_only_destination_is_a_clear_error_and_unchanged(kind: str, tmp_path: Path) -> None:
    # root ignores file modes, so the folder is made read-only by remounting it
    with _tmpfs(tmp_path / "ro", "16m") as mount:
        destination = make_destination(kind, mount)
        destination.write("t", SMALL, load_id="L1", mode="append")
        before = _snapshot(destination)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        _try_every_disposition(destination, r"table 't'.*(Read-only|readonly).*writable")
        after = _snapshot(destination)
        assert after[0].equals(before[0]) and after[1] == before[1] == ["L1"]


def test_unreachable_s3_warehouse_is_a_clear_error() -> None:
    closed = open_destination(
        "delta",
        path="s3://no-such-bucket/warehouse",
        storage_options={
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1",  # nothing listens on port 1
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            "max_retries": "1",
        },
    )
    expected = r"table 't': cannot open s3://no-such-bucket/warehouse/t: .*Connection refused"
    with pytest.raises(DestinationError, match=expected + ".*reachable") as failure:
        closed.write("t", SMALL, load_id="L")
    assert "\x1b" not in str(failure.value) and "\n" not in str(failure.value)
    with pytest.raises(DestinationError, match=expected):
        closed.read("t")


def test_unreachable_sqlite_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    under_a_file = open_destination("sqlite", path=tmp_path / "file" / "warehouse.sqlite")
    with pytest.raises(DestinationError, match=r"cannot open SQLite database .*file/warehouse"):
        under_a_file.write("t", SMALL, load_id="L")
    (tmp_path / "folder.sqlite").mkdir()
    a_folder = open_destination("sqlite", path=tmp_path / "folder.sqlite")
    with pytest.raises(DestinationError, match=r"folder\.sqlite.*(unable to open|directory)"):
        a_folder.write("t", SMALL, load_id="L")
    missing = open_destination("sqlite", path=tmp_path / "missing" / "warehouse.sqlite")
    with pytest.raises(
        DestinationError, match=r"'t' not found in .*missing/warehouse\.sqlite; run the ingest"
    ):
        missing.read("t")
    assert not (tmp_path / "missing").exists()  # a read creates nothing


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: a real 'no space left on device' (needs root; skipped without)."""
    with _tmpfs(tmp_path / "tiny", "2m") as mount:
        yield mount


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
