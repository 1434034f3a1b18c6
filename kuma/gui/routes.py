"""The GUI's HTTP side on the API port: the pages' files, their JSON, and the live feed.

``/gui/`` serves the single page; ``/gui/api/...`` the documents each view reads (paged and
filtered here, never a whole list of Dataplanes); ``/gui/events`` one server-sent-events stream
per open page, carrying change notices that tell the page what to read again.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

import anyio
import orjson
from aiohttp import web
from aiohttp_sse import sse_response

from kuma.api import ApiError

from .assets import SECURITY_HEADERS, Asset
from .feed import FeedSubscriber
from .views import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, DataplaneFilter

BASE = "/gui"
#: Server-sent-events comment lines keep idle connections (and proxies between) open.
PING_INTERVAL = 15.0

Handler = Callable[[web.Request], Any]


def _json(document: Any) -> web.Response:
    return web.Response(
        body=orjson.dumps(document),
        content_type="application/json",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


def _bad(field: str, reason: str) -> ApiError:
    return ApiError(400, "Bad Request", f"invalid {field}", [(field, reason)])


def _int(request: web.Request, field: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(field, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(field, f"expected a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise _bad(field, f"must be between {low} and {high}, got {value}")
    return value


def paging(request: web.Request) -> tuple[int, int]:
    """``offset`` (from 0) and ``size`` (1 to :data:`MAX_PAGE_SIZE`) of a list request."""
    size = _int(request, "size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    return _int(request, "offset", 0, 0, 10**9), size


def dataplane_filter(request: web.Request) -> DataplaneFilter:
    query = request.query
    try:
        return DataplaneFilter.parse(
            query.get("name", ""), query.getall("tag", []), query.get("status", "")
        )
    except ValueError as exc:
        raise _bad("status", str(exc)) from None


def asset_routes(assets: dict[str, Asset]) -> list[web.RouteDef]:
    index = assets["index.html"]

    async def redirect(request: web.Request) -> web.StreamResponse:
        # Returned, not raised: the API's error middleware renders raised HTTP errors as JSON.
        return web.Response(status=302, headers={"Location": BASE + "/"})

    async def page(request: web.Request) -> web.StreamResponse:
        return index.response(request)

    async def asset(request: web.Request) -> web.StreamResponse:
        found = assets.get(request.match_info["file"])
        if found is None:
            raise ApiError(404, "Not Found", f"no such path: {request.path}")
        return found.response(request)

    return [
        web.get(BASE, redirect),
        web.get(BASE + "/", page),
        web.get(BASE + "/{file:[A-Za-z0-9_-]+[.][a-z]+}", asset),
    ]


async def stream_events(request: web.Request, subscriber: FeedSubscriber) -> web.StreamResponse:
    """Send each batch of notices as one ``changes`` event until the page goes away or the
    feed closes (kuma-cp stopping). The first event says the stream is live, so a page that
    reconnected knows to read everything again. A page that left mid-write is nobody's error."""
    response = web.StreamResponse()
    with suppress(ConnectionResetError):
        response = await _stream(request, subscriber)
    return response


async def _stream(request: web.Request, subscriber: FeedSubscriber) -> web.StreamResponse:
    async with sse_response(request, ping_interval=PING_INTERVAL) as events:
        async with anyio.create_task_group() as tg:

            async def until_gone() -> None:
                # The ping task ends when a write fails: the page is gone.
                with suppress(Exception):
                    await events.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(until_gone)
            await events.send(orjson.dumps([{"kind": "hello"}]).decode(), event="changes")
            while True:
                batch = await subscriber.next_batch()
                if not batch:
                    break
                await events.send(orjson.dumps(batch).decode(), event="changes")
            tg.cancel_scope.cancel()
        return events


def json_route(path: str, build: Callable[[web.Request], Any]) -> web.RouteDef:
    async def handle(request: web.Request) -> web.StreamResponse:
        return _json(await build(request))

    return web.get(BASE + path, handle)
