"""The HTTP connector against a real JSON API on 127.0.0.1 (uvicorn in a thread)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

import polars as pl
import pytest

from featurepipe.config import HttpSourceConfig
from featurepipe.connectors import HttpSource, extract_source
from featurepipe.errors import SourceError
from featurepipe.state import StateStore

from .http_api import TOKEN, Api
from .push_support import serve_in_thread


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[Api, str]]:
    """The test API and its base URL, for the whole module."""
    served = Api()
    with serve_in_thread(served.app) as url:
        yield served, url


def _source(base_url: str, endpoint: str, **options) -> HttpSource:
    config = HttpSourceConfig(
        kind="http", base_url=base_url, endpoint=endpoint, backoff=0.05, **options
    )
    return HttpSource("items", config)


def _key() -> str:
    return secrets.token_hex(4)


@pytest.mark.parametrize(
    ("endpoint", "options"),
    [
        ("/page/{key}", {"records": "data", "pagination": {"style": "page"}}),
        (
            "/offset",
            {"records": "result.items", "pagination": {"style": "offset", "limit": 40}},
        ),
        (
            "/cursor",
            {"records": "data", "pagination": {"style": "cursor", "next_cursor": "meta.next"}},
        ),
        ("/link", {"pagination": {"style": "link"}}),
    ],
)
def test_every_pagination_style_reads_every_record_once(api, endpoint, options) -> None:
    served, url = api
    extraction = _source(url, endpoint.format(key=_key()), **options).extract()
    pages = [frame.height for frame in extraction]
    assert len(pages) > 3  # one batch per page: memory holds a page, not the whole API
    assert sum(pages) == len(served.records)
    assert extraction.lineage.rows == len(served.records)


def test_nested_json_kept_as_structs_or_flattened(api) -> None:
    _, url = api
    kept = _source(url, "/link", pagination={"style": "link"}).extract().collect()
    assert isinstance(kept.schema["geo"], pl.Struct)
    assert kept.schema["tags"] == pl.List(pl.String)
    flat = _source(url, "/link", pagination={"style": "link"}, flatten=True).extract().collect()
    assert {"geo.lat", "geo.city.name"} <= set(flat.columns)
    assert flat.filter(pl.col("id") == 4)["geo.city.name"].item() == "c1"


def test_retries_500s_timeouts_and_honours_retry_after(api, caplog) -> None:
    served, url = api
    key = _key()
    served.faults[key] = ["500", "slow", "429", "500"]
    source = _source(url, f"/page/{key}", records="data", pagination={"style": "page"}, timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="featurepipe.connectors.http"):
        frame = source.extract().collect()
    assert frame.height == len(served.records) and frame["id"].n_unique() == frame.height
    hits = served.hits[key]
    assert len(hits) == 4 + 6  # four faults retried, then 5 full pages and an empty one
    assert hits[3] - hits[2] >= 0.95  # the 429 said Retry-After: 1
    assert "HTTP 500" in caplog.text and "timed out" in caplog.text and "429" in caplog.text


def test_a_retry_after_beyond_the_cap_fails_at_once(api) -> None:
    served, url = api
    key = _key()
    served.faults[key] = ["429-hour"]
    source = _source(url, f"/page/{key}", records="data", pagination={"style": "page"})
    with pytest.raises(SourceError, match=r"HTTP 429 .*Retry-After 3600 s, longer than the 300 s"):
        source.extract().collect()
    assert len(served.hits[key]) == 1  # no retry, no hour-long wait


def test_a_relative_link_header_is_resolved_against_the_page_url(api) -> None:
    served, url = api
    source = _source(url, "/link", params={"relative": 1}, pagination={"style": "link"})
    pages = [frame["id"].to_list() for frame in source.extract()]
    assert len(pages) == 5 and pages[1][0] == 51
    assert sorted(i for page in pages for i in page) == [r["id"] for r in served.records]


def test_gives_up_with_a_clear_error_and_commits_nothing(api, tmp_path) -> None:
    served, url = api
    key = _key()
    served.faults[key] = ["500"] * 3
    source = _source(url, f"/page/{key}", records="data", max_retries=2)
    store = StateStore(tmp_path)
    with pytest.raises(
        SourceError, match=r"source 'items': GET .*/page/.* gave up after 3 attempts"
    ):
        extraction = source.extract()
        extraction.collect()
        store.commit("items", extraction.state)
    assert store.sources() == []


def test_malformed_page_names_the_page_and_stops(api) -> None:
    served, url = api
    key = _key()
    served.faults[key] = ["ok", "bad-json"]  # page 2 is cut short
    source = _source(url, f"/page/{key}", records="data", pagination={"style": "page"})
    extraction = source.extract()
    batches = iter(extraction)
    assert next(batches).height == 50
    with pytest.raises(
        SourceError, match=r"GET .*/page/\w+ \(page 2\): the response is not valid JSON"
    ):
        next(batches)
    with pytest.raises(SourceError, match="read every batch before taking the new state"):
        _ = extraction.state  # nothing to commit: the next run starts again from page 1


def test_wrong_record_path_lists_the_keys(api) -> None:
    _, url = api
    with pytest.raises(SourceError, match=r"no record list at 'items'.*\['data'\]"):
        _source(url, f"/page/{_key()}", records="items").extract().collect()


@pytest.mark.parametrize(
    "auth",
    [
        {"style": "bearer", "token_env": "FP_TEST_TOKEN"},
        {"style": "basic", "username_env": "FP_TEST_USER", "password_env": "FP_TEST_TOKEN"},
        {"style": "api_key", "token_env": "FP_TEST_TOKEN"},
    ],
)
def test_auth_from_the_environment(api, monkeypatch, auth) -> None:
    _, url = api
    source = _source(url, f"/auth/{auth['style']}", auth=auth)
    with pytest.raises(SourceError, match="FP_TEST_.* is not set"):
        source.extract().collect()
    monkeypatch.setenv("FP_TEST_USER", "ann")
    monkeypatch.setenv("FP_TEST_TOKEN", "wrong")
    with pytest.raises(SourceError, match=r"HTTP 401 .*check the credentials") as err:
        source.extract().collect()
    assert "wrong" not in str(err.value)
    monkeypatch.setenv("FP_TEST_TOKEN", TOKEN)
    assert source.extract().collect()["id"].to_list() == [1, 2, 3]


def test_incremental_cursor_takes_new_and_same_instant_records_once(api, tmp_path) -> None:
    served, url = api
    config = HttpSourceConfig(
        kind="http",
        base_url=url,
        endpoint="/events",
        cursor="updated",
        cursor_param="since",
        primary_key=["id"],
        write_disposition="append",
    )
    store = StateStore(tmp_path)

    def pull() -> list[int]:
        extraction = extract_source("events", config, store.read("events"))
        ids = extraction.collect()["id"].to_list()
        store.commit("events", extraction.state)
        return ids

    before = len(served.records)
    assert len(pull()) == before
    last = served.records[-1]["updated"]
    served.records.append({**served.records[-1], "id": 9001})  # late, at the same instant
    served.records.append({**served.records[-1], "id": 9002, "updated": last + "Z"})  # later
    try:
        assert sorted(pull()) == [9001, 9002]
        assert pull() == []
    finally:
        del served.records[before:]
