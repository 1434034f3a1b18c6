"""The server's life cycle: start on a free port, idempotent close, the kuma-cp component."""

from __future__ import annotations

import socket

import aiohttp
import anyio
import pytest

from kuma.api import ApiServer, ApiSettings, build_app, serve_api
from kuma.store.memory import MemoryStore

pytestmark = pytest.mark.anyio


def _refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def test_start_and_close_are_idempotent(store: MemoryStore) -> None:
    server = ApiServer(build_app(store, ApiSettings()), "127.0.0.1", 0)
    port = await server.start()
    assert port == server.port > 0
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as r:
        assert r.status == 200
    await server.close()
    await server.close()
    assert _refused(port)
    with pytest.raises(RuntimeError):
        await server.start()


async def test_close_without_start_and_a_failed_start(store: MemoryStore) -> None:
    await ApiServer(build_app(store, ApiSettings()), "127.0.0.1", 0).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = ApiServer(build_app(store, ApiSettings()), "127.0.0.1", taken.getsockname()[1])
        with pytest.raises(OSError, match="in use"):
            await busy.start()
        await busy.close()


async def test_serve_api_reports_its_port_and_stops_when_cancelled(store: MemoryStore) -> None:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            port, _ = await tg.start(serve_api, store, ApiSettings(port=0))
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/meshes") as reply,
            ):
                assert reply.status == 200
            tg.cancel_scope.cancel()
    assert _refused(port)


async def test_an_open_keep_alive_connection_does_not_hold_the_stop(store: MemoryStore) -> None:
    """An idle keep-alive connection does not hold the shutdown up."""
    with anyio.fail_after(10):
        async with aiohttp.ClientSession() as session:
            async with anyio.create_task_group() as tg:
                port, _ = await tg.start(serve_api, store, ApiSettings(port=0))
                async with session.get(f"http://127.0.0.1:{port}/") as reply:
                    assert reply.status == 200
                tg.cancel_scope.cancel()
            assert _refused(port)
