"""The SQL connector: PostgreSQL, MySQL/MariaDB and SQLite read as Arrow batches by connectorx,
whole or incrementally by a cursor column, never losing or doubling rows at the last cursor.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import polars as pl

from ..config import SqlSourceConfig
from ..errors import SourceError
from .base import Batch, BatchReader, CursorTracker, SourceBase

__all__ = ["SqlSource", "redact_url", "sql_literal"]

_DIALECTS = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}
_CONNECT_TIMEOUT = 10  # seconds; connectorx's own pool retries for 30 s before it gives up


class SqlSource(SourceBase[SqlSourceConfig]):
    """A table or query; with ``cursor``, only rows at or after the last cursor value."""

    kind = "sql"
    stage = "beta"
    options = SqlSourceConfig
    summary = "PostgreSQL, MySQL/MariaDB, SQLite: a table or a query, full or by a cursor"

    def read(self, state: Mapping[str, Any]) -> BatchReader:
        """Yield the new rows in batches; return the cursor state they lead to."""
        cfg = self.config
        url, secret = self._url()
        dialect = _dialect(url)
        where = self._describe(url)
        self._preflight(dialect, url, secret, where)
        last = state.get("cursor") if cfg.cursor else None
        query = self._query(dialect, last["value"] if last else None)
        tracker = CursorTracker(cfg.cursor, cfg.primary_key, last) if cfg.cursor else None
        for frame in self._stream(dialect, url, query, secret, where):
            if tracker is not None:
                frame = tracker.admit(frame, where)
            yield Batch(frame, where)
        return {"cursor": tracker.state()} if tracker is not None else {}

    # ---- connection -----------------------------------------------------------------

    def _url(self) -> tuple[str, str]:
        """The connection URL with its password, and the password (to scrub from errors)."""
        cfg = self.config
        url = cfg.url
        if cfg.url_env is not None:
            url = os.environ.get(cfg.url_env)
            if not url:
                raise SourceError(
                    f"source {self.name!r}: environment variable {cfg.url_env} is not set; "
                    "set it to the database URL."
                )
        assert url is not None  # noqa: S101 (config requires url or url_env)
        secret = unquote(urlsplit(url).password or "")
        if cfg.password_env is not None:
            secret = os.environ.get(cfg.password_env, "")
            if not secret:
                raise SourceError(
                    f"source {self.name!r}: environment variable {cfg.password_env} is not set; "
                    "set it to the database password."
                )
            parts = urlsplit(url)
            netloc = f"{parts.username or ''}:{quote(secret, safe='')}@{parts.hostname or ''}"
            netloc += f":{parts.port}" if parts.port else ""
            url = urlunsplit(parts._replace(netloc=netloc))
        if _dialect(url, self.name) == "sqlite":
            path = Path(url.split(":///", 1)[1] if ":///" in url else url.split("://", 1)[1])
            if not path.is_file():
                raise SourceError(
                    f"source {self.name!r}: SQLite database file not found: {path}; check "
                    f"`sources.{self.name}.url`."
                )
            url = f"sqlite://{path.resolve()}"
        return url, secret

    def _describe(self, url: str) -> str:
        what = self.config.table or "query"
        return f"{redact_url(url)} {what}"

    def _preflight(self, dialect: str, url: str, secret: str, where: str) -> None:
        """Connect once with the database's own driver: fast, clear errors for bad hosts,
        passwords and database names (connectorx's pool retries silently for 30 s)."""
        if dialect == "sqlite":
            return
        parts = urlsplit(url)
        try:
            if dialect == "postgresql":
                import psycopg

                psycopg.connect(url, connect_timeout=_CONNECT_TIMEOUT).close()
            else:
                import pymysql

                pymysql.connect(
                    host=parts.hostname or "127.0.0.1",
                    port=parts.port or 3306,
                    user=unquote(parts.username or ""),
                    password=secret,
                    database=parts.path.lstrip("/") or None,
                    connect_timeout=_CONNECT_TIMEOUT,
                ).close()
        except Exception as exc:  # each driver has its own error classes
            hint = (
                f"check the host, port, user and database in `sources.{self.name}.url`"
                + (f" and the password in ${self.config.password_env}" if secret else "")
                + ", and that the database server is running."
            )
            raise SourceError(
                f"source {self.name!r}: cannot connect to {redact_url(url)}: "
                f"{_scrub(str(exc), secret)}; {hint}"
            ) from None  # the driver's exception may carry the password

    # ---- query ----------------------------------------------------------------------

    def _query(self, dialect: str, since: Any) -> str:
        # S608: the query is the project's own config; names are quoted, the cursor value
        # (read back from the database) is escaped by sql_literal.
        cfg = self.config
        if cfg.table is not None:
            base = f"SELECT * FROM {quote_identifier(cfg.table, dialect)}"  # noqa: S608
        else:
            query = (cfg.query or "").strip().rstrip(";")
            base = f"SELECT * FROM ({query}) AS _fp_query"  # noqa: S608
        if since is None or cfg.cursor is None:
            return base
        column = quote_identifier(cfg.cursor, dialect)
        return f"{base} WHERE {column} >= {sql_literal(since)}"

    def _stream(
        self, dialect: str, url: str, query: str, secret: str, where: str
    ) -> Iterator[pl.DataFrame]:
        import connectorx

        try:
            reader = connectorx.read_sql(
                url, query, return_type="arrow_stream", batch_size=self.config.batch_rows
            )
            first = True
            for record_batch in reader:
                if record_batch.num_rows or first:
                    frame = pl.from_arrow(record_batch)
                    assert isinstance(frame, pl.DataFrame)  # noqa: S101 (a batch is a table)
                    yield frame
                first = False
        except RuntimeError as exc:
            message = _scrub(str(exc), secret)
            hint = (
                f"check `sources.{self.name}.table`"
                if self.config.table
                else f"check `sources.{self.name}.query`"
            )
            if self.config.cursor:
                hint += f" and the cursor column {self.config.cursor!r}"
            raise SourceError(
                f"source {self.name!r}: cannot read {where}: {message}; {hint}."
            ) from None


def _dialect(url: str, source: str = "") -> str:
    scheme = urlsplit(url).scheme.split("+", 1)[0].lower()
    if scheme not in _DIALECTS:
        raise SourceError(
            f"source {source!r}: unsupported database URL scheme {scheme!r}; use "
            "postgresql://, mysql:// (MariaDB too) or sqlite:///."
        )
    return _DIALECTS[scheme]


def quote_identifier(name: str, dialect: str) -> str:
    """A table or column name quoted for the dialect; ``schema.table`` quotes each part."""
    mark = "`" if dialect == "mysql" else '"'
    return ".".join(mark + part.replace(mark, mark * 2) + mark for part in name.split("."))


def sql_literal(value: Any) -> str:
    """A cursor value as a SQL literal (values come from the database, quoted all the same)."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float | Decimal):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value)
    return "'" + text.replace("'", "''") + "'"


def redact_url(url: str) -> str:
    """A URL fit for messages and logs: the password replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=netloc))


def _scrub(message: str, secret: str) -> str:
    message = " ".join(message.split())  # drivers' messages span lines
    if secret:
        message = message.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return message
