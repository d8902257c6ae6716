"""One source config per connector kind, and the ``SourceConfig`` union that picks one."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from .table import ColumnHint, Hint, _Model, _TableConfig, _url_has_password

FileFormat = Literal["csv", "tsv", "json", "ndjson", "parquet", "xlsx"]


class FileSourceConfig(_TableConfig):
    """A table read from files: a path, a glob or an fsspec URL (``s3://bucket/key*.csv``)."""

    kind: Literal["file"] = Field(default="file", description="the connector (the default)")
    format: FileFormat = Field(default="csv", description="how every matched file is parsed")
    path: str = Field(
        description="file path or glob, relative to the project or to `package`, or a URL"
    )
    package: str | None = Field(
        default=None, description="read `path` inside this installed Python package's folder"
    )
    delimiter: str | None = Field(
        default=None, description="CSV field separator; ',' for csv and a tab for tsv"
    )
    encoding: Literal["utf8", "utf8-lossy", "latin1", "cp1252"] = Field(
        default="utf8", description="text encoding of CSV/TSV files"
    )
    has_header: bool = Field(
        default=True, description="the first line (after skip_rows) names the columns"
    )
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

    kind: Literal["sql"] = Field(description="the connector")
    url: str | None = Field(
        default=None,
        description="e.g. postgresql://user@host:5432/db; never put a password here",
    )
    url_env: str | None = Field(default=None, description="environment variable holding the URL")
    password_env: str | None = Field(
        default=None, description="environment variable holding the password"
    )
    table: str | None = Field(
        default=None, description="table to read, e.g. public.orders (or give `query`)"
    )
    query: str | None = Field(default=None, description="SELECT to read instead of a `table`")
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

    style: Literal["none", "page", "offset", "cursor", "link"] = Field(
        default="none", description="how the next page is asked for; none: one request"
    )
    page_param: str = Field(default="page", description="query parameter of the page number")
    first_page: int = Field(default=1, description="number of the first page")
    offset_param: str = Field(default="offset", description="query parameter of the offset")
    limit_param: str = Field(default="limit", description="query parameter of the page size")
    limit: int = Field(default=100, gt=0, description="records per page (offset style)")
    cursor_param: str = Field(default="cursor", description="query parameter of the next token")
    next_cursor: str = Field(default="next", description="dotted path of the next token")
    max_pages: int | None = Field(
        default=None, gt=0, description="stop after this many pages; None: until the end"
    )


class HttpAuth(_Model):
    """Credentials for an HTTP API, always read from environment variables."""

    style: Literal["bearer", "basic", "api_key"] = Field(description="how credentials are sent")
    token_env: str | None = Field(default=None, description="bearer token or API key variable")
    username_env: str | None = Field(default=None, description="basic: user name variable")
    password_env: str | None = Field(default=None, description="basic: password variable")
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

    kind: Literal["http"] = Field(description="the connector")
    base_url: str = Field(description="e.g. https://api.example.com")
    endpoint: str = Field(default="", description="path after base_url, e.g. /v1/events")
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="query parameters sent with every request"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra request headers (never credentials: `auth`)"
    )
    records: str | None = Field(
        default=None, description="dotted path of the record list in a response, e.g. 'data'"
    )
    pagination: Pagination = Field(
        default=Pagination(), description="how pages are asked for (pagination.* below)"
    )
    auth: HttpAuth | None = Field(
        default=None, description="credentials from the environment (auth.* below)"
    )
    cursor: str | None = Field(default=None, description="record field that grows (incremental)")
    cursor_param: str | None = Field(
        default=None, description="query parameter that asks for records from a cursor value"
    )
    flatten: bool = Field(default=False, description="nested objects become parent.child columns")
    timeout: float = Field(default=30.0, gt=0, description="seconds per request")
    max_retries: int = Field(
        default=5, ge=0, description="retries of a 5xx, 429 or timeout before failing"
    )
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

    kind: Literal["push"] = Field(description="the connector")
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
