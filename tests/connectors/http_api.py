"""A real JSON API for the HTTP connector tests: every pagination style, scripted faults.

Served by uvicorn on 127.0.0.1 in a thread (see ``serve_in_thread``). Tests script faults
per path key (``api.faults["k"] = ["ok", "500", "429", "slow", "bad-json"]``), consumed one per
request, and read back ``api.hits`` (path key to request times).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import defaultdict
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

TOKEN = "t0ps3cret-token"  # noqa: S105 (the test API's own credential)
PER_PAGE = 50


def record(i: int) -> dict[str, Any]:
    """Record ``i``: nested object, list, and an ISO timestamp that grows with ``i``."""
    return {
        "id": i,
        "updated": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}",
        "name": f"record {i}",
        "geo": {"lat": i / 10, "city": {"name": f"c{i % 3}"}},
        "tags": ["a", "b"][: i % 3],
    }


class Api:
    """The app and what the tests script and observe."""

    def __init__(self, total: int = 230) -> None:
        self.records = [record(i) for i in range(1, total + 1)]
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.hits: dict[str, list[float]] = defaultdict(list)
        self.app = Starlette(
            routes=[
                Route("/page/{key}", self.page),
                Route("/offset", self.offset),
                Route("/cursor", self.cursor),
                Route("/link", self.link),
                Route("/auth/{style}", self.auth),
                Route("/events", self.events),
            ]
        )

    async def _fault(self, key: str) -> Response | None:
        self.hits[key].append(time.monotonic())
        if not self.faults[key]:
            return None
        fault = self.faults[key].pop(0)
        if fault == "ok":
            return None
        if fault == "500":
            return PlainTextResponse("upstream exploded", status_code=500)
        if fault == "429":
            return PlainTextResponse("slow down", status_code=429, headers={"Retry-After": "1"})
        if fault == "429-hour":
            return PlainTextResponse("quota", status_code=429, headers={"Retry-After": "3600"})
        if fault == "slow":
            await asyncio.sleep(1.5)
            return None
        if fault == "bad-json":
            return Response('{"data": [{"id": 1}, {"id": ', media_type="application/json")
        raise ValueError(fault)

    async def page(self, request: Request) -> Response:
        key = request.path_params["key"]
        if (fault := await self._fault(key)) is not None:
            return fault
        n = int(request.query_params.get("page", "1"))
        return JSONResponse({"data": self.records[(n - 1) * PER_PAGE : n * PER_PAGE]})

    async def offset(self, request: Request) -> Response:
        start = int(request.query_params["offset"])
        limit = int(request.query_params["limit"])
        return JSONResponse({"result": {"items": self.records[start : start + limit]}})

    async def cursor(self, request: Request) -> Response:
        start = int(request.query_params.get("cursor", "c0")[1:])
        chunk = self.records[start : start + PER_PAGE]
        after = start + PER_PAGE
        token = f"c{after}" if after < len(self.records) else None
        return JSONResponse({"data": chunk, "meta": {"next": token}})

    async def link(self, request: Request) -> Response:
        n = int(request.query_params.get("page", "1"))
        chunk = self.records[(n - 1) * PER_PAGE : n * PER_PAGE]
        headers = {}
        if n * PER_PAGE < len(self.records):
            relative = request.query_params.get("relative")  # a path relative to this URL
            target = (
                f"link?page={n + 1}&relative=1"
                if relative
                else str(request.url.replace_query_params(page=n + 1))
            )
            headers["Link"] = f'<{target}>; rel="next"'
        return JSONResponse(chunk, headers=headers)

    async def auth(self, request: Request) -> Response:
        expected = {
            "bearer": ("authorization", f"Bearer {TOKEN}"),
            "basic": (
                "authorization",
                "Basic " + base64.b64encode(b"ann:" + TOKEN.encode()).decode(),
            ),
            "api_key": ("x-api-key", TOKEN),
        }[request.path_params["style"]]
        if request.headers.get(expected[0]) != expected[1]:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse(self.records[:3])

    async def events(self, request: Request) -> Response:
        since = request.query_params.get("since", "")
        return JSONResponse([r for r in self.records if r["updated"] >= since])
