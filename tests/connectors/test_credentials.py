"""Credentials never leave the environment: not in output, run folders, MLflow (artifacts and
its database), state or the warehouse, at verbose logging, whether the run works or fails;
and an HTTP token never reaches even DEBUG logs."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import pytest

import featurepipe as fp

from ..conftest import copy_project, run_cli
from .conftest import Database
from .http_api import TOKEN, Api
from .push_support import serve_in_thread
from .test_http import _source

SUITE = {
    "expectations": [{"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}],
    "meta": {},
}


def _leaks(secret: str, root: Path, *texts: str) -> list[str]:
    """Where ``secret`` (or its URL-quoted form) appears: in the texts or any file under root."""
    needles = {secret.encode(), quote(secret, safe="").encode()}
    found = [
        f"output {i}" for i, text in enumerate(texts) if any(n.decode() in text for n in needles)
    ]
    for file in root.rglob("*"):
        if file.is_file() and any(n in file.read_bytes() for n in needles):
            found.append(str(file.relative_to(root)))
    return found


@pytest.fixture
def users(postgres: Database, mariadb: Database) -> Iterator[dict[str, tuple[str, str]]]:
    """A user with a password of its own on each server (PostgreSQL's loopback is set to
    trust here, so MariaDB is the one that proves the password is really sent)."""
    made = {
        "pg": (f"fp_{secrets.token_hex(4)}", f"pg-{secrets.token_hex(10)}"),
        "my": (f"fp_{secrets.token_hex(4)}", f"my-{secrets.token_hex(10)}"),
    }
    postgres.execute(f"CREATE ROLE {made['pg'][0]} LOGIN PASSWORD '{made['pg'][1]}'")
    mariadb.execute(f"CREATE USER '{made['my'][0]}'@'127.0.0.1' IDENTIFIED BY '{made['my'][1]}'")
    try:
        yield made
    finally:
        postgres.execute(f"DROP OWNED BY {made['pg'][0]}")
        postgres.execute(f"DROP ROLE IF EXISTS {made['pg'][0]}")
        mariadb.execute(f"DROP USER IF EXISTS '{made['my'][0]}'@'127.0.0.1'")


@pytest.mark.e2e
def test_database_passwords_appear_nowhere_a_run_writes(
    postgres: Database,
    mariadb: Database,
    users: dict[str, tuple[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mlflow_store: Callable[[Path], Path],
) -> None:
    tables = {}
    for key, db, grant in (
        ("pg", postgres, "GRANT SELECT ON {t} TO {u}"),
        ("my", mariadb, "GRANT SELECT ON test.{t} TO '{u}'@'127.0.0.1'"),
    ):
        table = tables[key] = db.table("secret_orders")
        db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, amount INTEGER)")
        db.execute(f"INSERT INTO {table} VALUES (%s, %s)", [(i, i) for i in range(1, 51)])
        db.execute(grant.format(t=table, u=users[key][0]))
    project = mlflow_store(copy_project(tmp_path / "p"))
    toml = project / "featurepipe.toml"
    text = toml.read_text()
    start, end = text.index("# ---- sources"), text.index("# ---- features")
    sources = f"""[sources.orders_pg]
kind = "sql"
url = "postgresql://{users["pg"][0]}@127.0.0.1:5432/test"
password_env = "FP_TEST_PG_PASSWORD"
table = "{tables["pg"]}"

[sources.orders_my]
kind = "sql"
url = "mysql://{users["my"][0]}@127.0.0.1:3306/test"
password_env = "FP_TEST_MY_PASSWORD"
table = "{tables["my"]}"

"""
    toml.write_text(text[:start] + sources + text[end:])
    for name in ("orders_pg", "orders_my"):
        (project / "expectations" / f"{name}.json").write_text(json.dumps({"name": name, **SUITE}))
    monkeypatch.setenv("FP_TEST_PG_PASSWORD", users["pg"][1])
    monkeypatch.setenv("FP_TEST_MY_PASSWORD", users["my"][1])

    good = run_cli("-v", "run", "--step", "01_ingest", cwd=project)
    assert good.returncode == 0, good.stderr + good.stdout
    assert fp.read_table("orders_my", project=project).height == 50
    with closing(sqlite3.connect(project / "mlflow.db")) as db:  # the scan below reads it
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] > 0
    assert list((project / "runs").rglob("*.ipynb"))

    wrong = f"wrong-{secrets.token_hex(10)}"
    monkeypatch.setenv("FP_TEST_MY_PASSWORD", wrong)
    bad = run_cli("-v", "run", "--step", "01_ingest", cwd=project)
    assert bad.returncode != 0
    assert "Access denied" in bad.stderr and "FP_TEST_MY_PASSWORD" in bad.stderr
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "url.txt").write_text(f"mysql://u:{quote(wrong, safe='')}@h")
    assert _leaks(wrong, canary) == ["url.txt"]  # the search finds a leak where there is one
    for secret in (users["pg"][1], users["my"][1], wrong):
        leaks = _leaks(secret, project, good.stdout, good.stderr, bad.stdout, bad.stderr)
        assert leaks == [], f"{secret[:3]}… found in {leaks}"


def test_http_credentials_never_reach_debug_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Api()
    monkeypatch.setenv("FP_TEST_USER", "ann")
    monkeypatch.setenv("FP_TEST_TOKEN", TOKEN)
    with serve_in_thread(served.app) as url, caplog.at_level(logging.DEBUG):
        for auth in (
            {"style": "bearer", "token_env": "FP_TEST_TOKEN"},
            {"style": "basic", "username_env": "FP_TEST_USER", "password_env": "FP_TEST_TOKEN"},
            {"style": "api_key", "token_env": "FP_TEST_TOKEN"},
        ):
            source = _source(url, f"/auth/{auth['style']}", auth=auth)
            assert source.extract().collect().height == 3
        served.faults["k"] = ["500"]  # a retry is logged with the request it repeats
        _source(url, "/page/k", records="data").extract().collect()
    assert "httpx" in caplog.text or "httpcore" in caplog.text  # DEBUG logging was on
    assert "retry 1" in caplog.text
    basic = base64.b64encode(f"ann:{TOKEN}".encode()).decode()
    assert TOKEN not in caplog.text and basic not in caplog.text
    assert os.environ["FP_TEST_TOKEN"] == TOKEN
