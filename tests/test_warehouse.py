"""The project's destination from featurepipe.toml, load options and pinned reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

import featurepipe as fp
from featurepipe.config import load_config
from featurepipe.errors import ConfigError, DestinationError
from tests.destinations.conftest import PG_URL, drop_pg_schema, new_pg_schema


def _edit(project: Path, old: str, new: str) -> None:
    file = project / "featurepipe.toml"
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))


def test_default_destination_is_the_delta_folder(project) -> None:
    config = load_config(project)
    assert config.destination_options() == {
        "kind": "delta",
        "path": str(project.resolve() / "warehouse"),
    }
    assert fp.open_warehouse(config).kind == "delta"


def test_sqlite_destination_and_read_table_pins_a_version(project) -> None:
    _edit(project, 'kind = "delta"', 'kind = "sqlite"')
    _edit(project, 'path = "warehouse"', 'path = "data/featurepipe.sqlite"')
    config = load_config(project)
    warehouse = fp.open_warehouse(config)
    assert warehouse.location("t") == str(project.resolve() / "data" / "featurepipe.sqlite")
    first = warehouse.write("t", pl.DataFrame({"k": [1]}), load_id="L1", mode="append")
    warehouse.write("t", pl.DataFrame({"k": [2]}), load_id="L2", mode="append")
    assert fp.read_table("t", project=project)["k"].to_list() == [1, 2]
    assert fp.read_table("t", version=first.version, project=config)["k"].to_list() == [1]
    with pytest.raises(DestinationError, match="table 'nope' not found"):
        fp.read_table("nope", project=project)


def test_load_options_carry_disposition_key_delete_flag_and_contract(project) -> None:
    _edit(
        project,
        'primary_key = ["tailnum"]',
        'primary_key = ["tailnum"]\nwrite_disposition = "merge"\ndelete_column = "retired"',
    )
    options = load_config(project).load_options("planes")
    assert options == {
        "mode": "merge",
        "primary_key": ["tailnum"],
        "delete_column": "retired",
        "source": "planes",
        "schema_mode": "evolve",
    }


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('primary_key = ["tailnum"]', 'write_disposition = "merge"', "merge' needs primary_key"),
        ('primary_key = ["tailnum"]', 'delete_column = "x"', "delete_column needs"),
        ('kind = "delta"', 'kind = "postgres"', "postgres needs exactly one of `url`"),
        ('kind = "delta"', 'kind = "oracle"', r"destination\.kind"),
    ],
)
def test_bad_destination_settings_name_the_key(project, old, new, message) -> None:
    _edit(project, old, new)
    if "postgres" in new:
        _edit(project, 'path = "warehouse"', "")
    with pytest.raises(ConfigError, match=message):
        load_config(project)


def test_postgres_url_with_a_password_is_refused(project, monkeypatch) -> None:
    _edit(project, 'kind = "delta"', 'kind = "postgres"')
    _edit(project, 'path = "warehouse"', 'url = "postgresql://me:secret@localhost/db"')
    with pytest.raises(ConfigError, match="holds a password.*PGPASSWORD"):
        load_config(project)
    _edit(project, 'url = "postgresql://me:secret@localhost/db"', 'url_env = "FP_TEST_PG_URL"')
    monkeypatch.delenv("FP_TEST_PG_URL", raising=False)
    with pytest.raises(ConfigError, match="FP_TEST_PG_URL is not set"):
        load_config(project).destination_options()
    monkeypatch.setenv("FP_TEST_PG_URL", "postgresql://me@localhost/db")
    assert load_config(project).destination_options() == {
        "kind": "postgres",
        "url": "postgresql://me@localhost/db",
        "schema": "public",
    }


def test_postgres_destination_from_config_reads_pinned_versions(project, pg_schema) -> None:
    _edit(project, 'kind = "delta"', 'kind = "postgres"')
    _edit(project, 'path = "warehouse"', f'url = "{PG_URL}"\nschema_name = "{pg_schema}"')
    config = load_config(project)
    warehouse = fp.open_warehouse(config)
    assert warehouse.location("t").endswith(f"#{pg_schema}.t")
    first = warehouse.write("t", pl.DataFrame({"k": [1]}), load_id="L1", mode="append")
    warehouse.write("t", pl.DataFrame({"k": [2]}), load_id="L2", mode="append")
    assert fp.read_table("t", project=config)["k"].sort().to_list() == [1, 2]
    assert fp.read_table("t", version=first.version, project=config)["k"].to_list() == [1]


@pytest.fixture
def pg_schema() -> Iterator[str]:
    name = new_pg_schema()
    yield name
    drop_pg_schema(name)
