"""kuma-dp's metrics hijacker on its unix socket: Envoy's Prometheus stats with the listener's
query passed on, the aggregated applications' metrics merged (a failing one left out), Kuma's
content type choice, a socket only its owner may use, removed at stop; a stale socket file is
replaced, a live one is an error."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from kuma.dp.hijacker import (
    OPENMETRICS_1,
    PROMETHEUS_TEXT,
    Endpoint,
    MetricsHijacker,
    endpoints_of,
    merge,
)

from ..fixtures.http import serve

pytestmark = pytest.mark.anyio

ENVOY_STATS = b"# TYPE envoy_server_live gauge\nenvoy_server_live 1\n\n"
APP = b"# TYPE app_requests counter\napp_requests_total 7\n# EOF\n"


@asynccontextmanager
async def server(routes: dict[str, tuple[int, bytes, str]], seen: list[str]) -> AsyncIterator[int]:
    """A stand-in HTTP server (Envoy's admin API or an application): path → answer."""

    async def handle(request: web.Request) -> web.Response:
        seen.append(
            f"{request.remote} {request.rel_url}"
            if request.path == "/peer"
            else str(request.rel_url)
        )
        status, body, content_type = routes[request.path]
        return web.Response(status=status, body=body, headers={"content-type": content_type})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    async with serve(app) as port:
        yield port


def _exists(path: str) -> bool:
    return os.path.lexists(path)


async def scrape(path: str, target: str) -> tuple[int, bytes, str]:
    connector = aiohttp.UnixConnector(path=path)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"http://localhost{target}", headers={"accept": "text/plain"}) as response,
    ):
        return response.status, await response.read(), response.headers["content-type"]


async def test_envoy_and_applications_merged(tmp_path: Path) -> None:
    envoy_seen: list[str] = []
    app_seen: list[str] = []
    path = str(tmp_path / "kuma-mh-web-01-default.sock")
    envoy_routes = {"/stats": (200, ENVOY_STATS, "text/plain; charset=UTF-8")}
    app_routes = {
        "/metrics": (200, APP, "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "/broken": (500, b"no", "text/plain"),
    }
    async with server(envoy_routes, envoy_seen) as admin, server(app_routes, app_seen) as app:
        endpoints = [
            Endpoint("app", "127.0.0.1", app, "/metrics"),
            Endpoint("broken", "127.0.0.1", app, "/broken"),
            Endpoint("gone", "127.0.0.1", 1, "/metrics"),
        ]
        hijacker = MetricsHijacker(path, admin, endpoints)
        await hijacker.start()
        try:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            status, body, content_type = await scrape(path, "/?filter=envoy_server.*&usedonly")
        finally:
            await hijacker.stop()
    assert status == 200
    assert envoy_seen == ["/stats?filter=envoy_server.*&usedonly=&format=prometheus&text_readouts="]
    # Applications get no query (Kuma's RemoveQueryParameters).
    assert sorted(app_seen) == ["/broken", "/metrics"]
    assert content_type == OPENMETRICS_1
    assert body == (
        b"# TYPE app_requests counter\napp_requests_total 7\n"
        b"# TYPE envoy_server_live gauge\nenvoy_server_live 1\n# EOF\n"
    )
    assert not _exists(path)


def test_merge_of_prometheus_text_only() -> None:
    body, content_type = merge([ENVOY_STATS, b"\n\nx 1\n"], [PROMETHEUS_TEXT, ""])
    assert content_type == PROMETHEUS_TEXT
    assert body == b"# TYPE envoy_server_live gauge\nenvoy_server_live 1\nx 1\n"


def test_endpoints_from_the_sidecar_configuration() -> None:
    sidecar = {
        "metrics": {
            "aggregate": [
                {"name": "a", "address": "10.0.0.1", "port": 9000, "path": "/m"},
                {"name": "bad", "port": "not a port"},
            ]
        }
    }
    assert endpoints_of(sidecar) == [Endpoint("a", "10.0.0.1", 9000, "/m")]
    assert endpoints_of({}) == []


async def test_stale_socket_replaced_live_one_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "mh.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nothing answers: a kuma-dp that died
    first = MetricsHijacker(path, 1)
    await first.start()
    try:
        second = MetricsHijacker(path, 1)
        with pytest.raises(OSError, match="served by another process"):
            await second.start()
        # The first still serves (Envoy unreachable here: an empty answer, logged).
        assert (await scrape(path, "/"))[:2] == (200, b"\n")
    finally:
        await first.stop()
    assert not _exists(path)


async def test_transparent_proxy_scrapes_from_the_passthrough_source(tmp_path: Path) -> None:
    """Under transparent proxying kuma-dp scrapes applications from 127.0.0.6, which the
    proxy's iptables rules let through instead of redirecting into Envoy (Kuma's choice)."""
    seen: list[str] = []
    path = str(tmp_path / "mh.sock")
    routes = {"/peer": (200, b"x 1\n", "text/plain"), "/stats": (200, b"", "text/plain")}
    async with server(routes, seen) as port:
        endpoint = Endpoint("app", "127.0.0.1", port, "/peer")
        hijacker = MetricsHijacker(path, port, [endpoint], transparent=True)
        await hijacker.start()
        try:
            assert (await scrape(path, "/"))[:2] == (200, b"x 1\n")
        finally:
            await hijacker.stop()
    assert "127.0.0.6 /peer" in seen
