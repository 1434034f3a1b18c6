"""kuma-dp's readiness reporter: READY while Envoy is LIVE, TERMINATING from the moment a drain
starts, Envoy's own state (or NOT READY) otherwise; Kuma's headers; a taken port is an error
naming it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from kuma.dp.readiness import ReadinessReporter

from ..fixtures.http import serve

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def envoy_admin(state: list[str]) -> AsyncIterator[int]:
    """A stand-in for Envoy's admin ``/ready``: 200 LIVE, else 503 with the state."""

    async def ready(request: web.Request) -> web.Response:
        return web.Response(status=200 if state[0] == "LIVE" else 503, text=state[0] + "\n")

    app = web.Application()
    app.router.add_get("/ready", ready)
    async with serve(app) as port:
        yield port


async def _get(port: int, path: str = "/ready") -> tuple[int, str, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return (
            response.status,
            await response.text(),
            {k.lower(): v for k, v in response.headers.items()},
        )


async def test_reports_envoys_readiness_then_terminating() -> None:
    state = ["PRE_INITIALIZING"]
    reporter = ReadinessReporter()
    await reporter.start()
    try:
        assert reporter.port > 0
        # Before the bootstrap: Envoy's admin port is not known yet.
        assert (await _get(reporter.port))[:2] == (503, "NOT READY")
        async with envoy_admin(state) as admin_port:
            reporter.envoy_admin_port = admin_port
            assert (await _get(reporter.port))[:2] == (503, "PRE_INITIALIZING")
            state[0] = "LIVE"
            status, body, headers = await _get(reporter.port)
            assert (status, body) == (200, "READY")
            assert headers["content-type"].startswith("text/plain")
            assert headers["cache-control"] == "no-cache, max-age=0"
            assert headers["x-powered-by"] == "kuma-dp"
            # A drain starts: TERMINATING at once, while Envoy itself is still LIVE.
            reporter.set_terminating()
            assert (await _get(reporter.port))[:2] == (503, "TERMINATING")
        # Only /ready is served.
        assert (await _get(reporter.port, "/ready/x"))[0] == 404
    finally:
        await reporter.stop()


async def test_envoy_admin_gone_is_not_ready() -> None:
    reporter = ReadinessReporter()
    await reporter.start()
    try:
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            reporter.envoy_admin_port = closed.getsockname()[1]
        assert (await _get(reporter.port))[:2] == (503, "NOT READY")
    finally:
        await reporter.stop()


async def test_a_taken_port_is_an_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        reporter = ReadinessReporter(port)
        with pytest.raises(OSError, match=f"readiness reporter: cannot listen on 127.0.0.1:{port}"):
            await reporter.start()
