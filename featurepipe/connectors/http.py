"""The HTTP connector: JSON APIs, paginated (page, offset, cursor token, Link header), with
retries and backoff, credentials from the environment and an optional incremental cursor.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urljoin

import httpx
import polars as pl
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ..config import HttpSourceConfig
from ..errors import SourceError
from .base import Batch, BatchReader, CursorTracker, SourceBase

__all__ = ["HttpSource", "flatten_structs", "select_records"]

log = logging.getLogger(__name__)
_MAX_RETRY_AFTER = 300.0  # seconds; a 429 asking for a longer wait fails at once, not hangs


class _Transient(Exception):
    """A response worth retrying: 5xx, 429 or a timeout/connection error."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HttpSource(SourceBase[HttpSourceConfig]):
    """Records of a JSON API; with ``cursor``, only records at or after the last cursor."""

    kind = "http"
    stage = "alpha"
    options = HttpSourceConfig
    summary = "JSON APIs: page, offset, cursor-token or Link pagination; retries; auth from env"

    def read(self, state: Mapping[str, Any]) -> BatchReader:
        """Yield one batch per page; return the cursor state they lead to."""
        cfg = self.config
        params: dict[str, Any] = dict(cfg.params)
        last = state.get("cursor") if cfg.cursor else None
        if last and cfg.cursor_param:
            params[cfg.cursor_param] = _param_value(last["value"])
        tracker = (
            CursorTracker(cfg.cursor, cfg.primary_key, last) if cfg.cursor is not None else None
        )
        with self._client() as client:
            for number, (url, body) in enumerate(self._pages(client, params), start=1):
                where = f"{url} (page {number})"
                frame = _to_frame(select_records(body, cfg.records, where), cfg.flatten, where)
                if tracker is not None and frame.height:
                    frame = tracker.admit(frame, f"source {self.name!r}: {where}")
                yield Batch(frame, self._endpoint_url())
        return {"cursor": tracker.state()} if tracker is not None else {}

    # ---- requests -------------------------------------------------------------------

    def _endpoint_url(self) -> str:
        base = self.config.base_url.rstrip("/")
        endpoint = self.config.endpoint.lstrip("/")
        return f"{base}/{endpoint}" if endpoint else base

    def _client(self) -> httpx.Client:
        cfg = self.config
        headers = {"Accept": "application/json", **cfg.headers}
        auth: httpx.Auth | None = None
        if cfg.auth is not None:
            if cfg.auth.style == "basic":
                auth = httpx.BasicAuth(
                    self._secret(cfg.auth.username_env), self._secret(cfg.auth.password_env)
                )
            elif cfg.auth.style == "bearer":
                headers["Authorization"] = f"Bearer {self._secret(cfg.auth.token_env)}"
            else:
                headers[cfg.auth.header] = self._secret(cfg.auth.token_env)
        return httpx.Client(headers=headers, auth=auth, timeout=cfg.timeout)

    def _secret(self, variable: str | None) -> str:
        value = os.environ.get(variable or "")
        if not value:
            raise SourceError(
                f"source {self.name!r}: environment variable {variable} is not set; set it to "
                "the API credential (it is never written to config, logs or MLflow)."
            )
        return value

    def _pages(self, client: httpx.Client, params: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        cfg, paging = self.config, self.config.pagination
        url: str | None = self._endpoint_url()
        if paging.style == "page":
            params[paging.page_param] = paging.first_page
        elif paging.style == "offset":
            params[paging.offset_param], params[paging.limit_param] = 0, paging.limit
        pages = 0
        while url is not None:
            response, body = self._get(client, url, params, pages + 1)
            pages += 1
            yield url, body
            if paging.style == "none" or (paging.max_pages and pages >= paging.max_pages):
                return
            count = len(select_records(body, cfg.records, url))
            if paging.style == "page":
                if count == 0:
                    return
                params[paging.page_param] += 1
            elif paging.style == "offset":
                if count < paging.limit:
                    return
                params[paging.offset_param] += count
            elif paging.style == "cursor":
                token = _dig(body, paging.next_cursor)
                if not token:
                    return
                params[paging.cursor_param] = token
            else:  # link: the next URL carries its own query; it may be relative
                following = response.links.get("next", {}).get("url")
                url = urljoin(str(response.url), following) if following else None
                params = {}

    def _get(
        self, client: httpx.Client, url: str, params: Mapping[str, Any], page: int
    ) -> tuple[httpx.Response, Any]:
        cfg = self.config
        where = f"source {self.name!r}: GET {url} (page {page})"
        retrying = Retrying(
            stop=stop_after_attempt(cfg.max_retries + 1),
            wait=_wait(cfg.backoff),
            retry=retry_if_exception(lambda e: isinstance(e, _Transient)),
            before_sleep=lambda state: _log_retry(where, state),
        )
        try:
            response = retrying(self._send, client, url, params)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise SourceError(
                f"{where}: gave up after {cfg.max_retries + 1} attempts: {cause}; the API is "
                "failing or too slow: try later, or raise `timeout` / `max_retries`."
            ) from cause
        if response.status_code >= 400:
            hint = (
                "check the credentials in the environment variables named by `auth`"
                if response.status_code in (401, 403)
                else f"check `sources.{self.name}.base_url`, `endpoint` and `params`"
            )
            raise SourceError(f"{where}: HTTP {response.status_code} {_excerpt(response)}; {hint}.")
        try:
            return response, response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SourceError(
                f"{where}: the response is not valid JSON ({exc}): {_excerpt(response)}; "
                "nothing from this pull is committed: fix the API or retry later."
            ) from exc

    def _send(self, client: httpx.Client, url: str, params: Mapping[str, Any]) -> httpx.Response:
        try:
            response = client.get(url, params=params or None)
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out after {self.config.timeout:g} s ({exc!r})") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429:
            wait = _retry_after(response)
            if wait is not None and wait > _MAX_RETRY_AFTER:
                raise SourceError(
                    f"source {self.name!r}: GET {url}: HTTP 429 Too Many Requests with "
                    f"Retry-After {wait:.0f} s, longer than the {_MAX_RETRY_AFTER:.0f} s a run "
                    "waits; nothing from this pull is committed: run again after that time."
                )
            raise _Transient("HTTP 429 Too Many Requests", wait)
        if response.status_code >= 500:
            raise _Transient(f"HTTP {response.status_code} {_excerpt(response)}")
        return response


def _log_retry(where: str, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("%s: %s; retry %d", where, exc, state.attempt_number)


def _wait(backoff: float) -> Any:
    exponential = wait_exponential_jitter(multiplier=backoff, max=60, jitter=backoff)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return exc.retry_after
        return float(exponential(state))

    return wait


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0)


def _excerpt(response: httpx.Response) -> str:
    text = " ".join(response.text[:200].split())
    return repr(text) + ("…" if len(response.text) > 200 else "")


def _param_value(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _dig(body: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(body, Mapping):
            return None
        body = body.get(key)
    return body


def select_records(body: Any, path: str | None, where: str) -> list[Any]:
    """The list of records in a response: ``body`` itself, or the list at a dotted path."""
    records = _dig(body, path) if path else body
    if isinstance(records, list):
        return records
    keys = sorted(body) if isinstance(body, Mapping) else []
    raise SourceError(
        f"{where}: no record list at {path or 'the top level'!r} of the response"
        + (f" (its keys: {keys})" if keys else "")
        + "; set `records` to the dotted path of the list, e.g. 'data' or 'result.items'."
    )


def _to_frame(records: list[Any], flatten: bool, where: str) -> pl.DataFrame:
    if not records:
        return pl.DataFrame()
    if not all(isinstance(r, Mapping) for r in records):
        raise SourceError(f"{where}: records must be JSON objects, got {records[0]!r:.80}")
    try:
        frame = pl.from_dicts(records, infer_schema_length=None)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise SourceError(f"{where}: records do not form a table: {exc}") from exc
    return flatten_structs(frame) if flatten else frame


def flatten_structs(frame: pl.DataFrame, separator: str = ".") -> pl.DataFrame:
    """Nested objects become ``parent.child`` columns, recursively; lists stay lists."""
    while structs := [c for c, t in frame.schema.items() if isinstance(t, pl.Struct)]:
        column = structs[0]
        fields = [f.name for f in frame.schema[column].fields]  # type: ignore[attr-defined]
        renamed = pl.col(column).struct.rename_fields([f"{column}{separator}{f}" for f in fields])
        frame = frame.with_columns(renamed).unnest(column)
    return frame
