"""kuma-dp's bootstrap client: waits for the control plane, gives up only on a refusal."""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import orjson
import pytest
from aiohttp import web

from kuma.dp.client import BootstrapRefused, describe_refusal, fetch_bootstrap

pytestmark = pytest.mark.anyio

DEADLINE = 10.0
REQUEST = {"mesh": "default", "name": "web-01"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def control_plane(port: int, replies: list[web.Response]) -> AsyncIterator[list[bytes]]:
    """Answers POST /bootstrap with ``replies`` in turn (the last one forever)."""
    received: list[bytes] = []

    async def bootstrap(request: web.Request) -> web.Response:
        received.append(await request.read())
        assert request.headers["Accept"] == "application/json"
        return replies[min(len(received), len(replies)) - 1]

    app = web.Application()
    app.router.add_post("/bootstrap", bootstrap)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield received
    finally:
        await runner.cleanup()


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (the caller holds the deadline): log text has no event to wait on."""
    while not condition():  # noqa: ASYNC110
        await anyio.sleep(0.01)


def envelope(text: str = "admin: {}\n") -> web.Response:
    body = {"bootstrap": base64.b64encode(text.encode()).decode(), "kumaSidecarConfiguration": {}}
    return web.json_response(body)


def refusal(status: int) -> web.Response:
    document = {
        "detail": "Resource is not valid",
        "causes": [{"field": "networking.address", "message": "must not be 0.0.0.0 or ::"}],
    }
    return web.json_response(document, status=status)


async def test_waits_for_an_unreachable_control_plane(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "kuma.dp")
    port = free_port()
    got: list[str] = []
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:

            async def fetch() -> None:
                url = f"http://127.0.0.1:{port}"
                bootstrap = await fetch_bootstrap(url, REQUEST, first_pause=0.01, max_pause=0.05)
                got.append(bootstrap.yaml)

            tg.start_soon(fetch)
            await until(lambda: caplog.text.count("waiting for the control plane") >= 2)
            # Then it comes up, first not knowing the Dataplane, and a 503, then answering.
            replies = [web.Response(status=404), web.Response(status=503), envelope()]
            async with control_plane(port, replies) as received:
                await until(lambda: bool(got))
    assert got == ["admin: {}\n"]
    assert len(received) == 3
    assert orjson.loads(received[0]) == REQUEST
    assert "cannot reach it" in caplog.text
    assert "does not know the Dataplane yet (404)" in caplog.text
    assert "HTTP 503" in caplog.text


@pytest.mark.parametrize("status", [400, 422])
async def test_a_refusal_ends_it_with_the_reasons(status: int) -> None:
    port = free_port()
    with anyio.fail_after(DEADLINE):
        async with control_plane(port, [refusal(status)]) as received:
            with pytest.raises(BootstrapRefused) as caught:
                await fetch_bootstrap(f"http://127.0.0.1:{port}/", REQUEST)
    assert len(received) == 1
    assert str(caught.value) == (
        f"HTTP {status}: Resource is not valid\n  networking.address: must not be 0.0.0.0 or ::"
    )


def test_describe_refusal_of_a_body_that_is_not_json() -> None:
    assert describe_refusal(400, b"nope\n") == "HTTP 400: nope"
