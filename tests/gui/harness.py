"""A GUI on a real socket over a store and an engine the test owns, with an aiohttp client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import orjson
from multidict import CIMultiDict

from kuma.api import ApiServer, ApiSettings, build_app
from kuma.gui import Gui
from kuma.insights import Insights, MemoryInsightStore
from kuma.inspect import served_config_routes
from kuma.store import Store
from kuma.xds.composite import CompositeSource
from kuma.xds.engine import Engine
from kuma.xds.secrets import EmptySecretSource
from kuma.xds.server.observer import ObserverGroup
from kuma.xds.types import CLUSTER, SECRET
from tests.api.helpers import forge_peer


def new_insights() -> Insights:
    return Insights(MemoryInsightStore(), flush_interval=10.0, instance_id="cp-test")


@dataclass
class GuiClient:
    base: str
    gui: Gui
    insights: Insights
    session: aiohttp.ClientSession
    _streams: int = 0

    def connect(self, mesh: str, name: str, *, responses: int = 0, nacks: int = 0) -> int:
        """A proxy's ADS stream opens, as the server reports it to every observer."""
        self._streams += 1
        node = f"{mesh}.{name}"
        observers = ObserverGroup([self.insights.tracker, self.gui.streams])
        observers.on_stream_open(self._streams, node, "delta", "1.32.0")
        for _ in range(responses):
            observers.on_response(node, CLUSTER, 1, "n")
        for _ in range(nacks):
            observers.on_nack(node, CLUSTER, "n", "rejected for a test")
        return self._streams

    async def get(self, path: str, **headers: str) -> tuple[int, bytes, Mapping[str, str]]:
        async with self.session.get(self.base + path, headers=headers) as reply:
            return reply.status, await reply.read(), CIMultiDict(reply.headers)

    async def json(self, path: str, status: int = 200) -> Any:
        code, body, _ = await self.get(path)
        assert code == status, body
        return orjson.loads(body)


@asynccontextmanager
async def serve_gui(store: Store) -> AsyncIterator[GuiClient]:
    engine = Engine()
    insights = new_insights()
    gui = Gui(store, insights)
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run, store)
        await engine.wait_synced()
        await tg.start(gui.run)
        # As kuma-cp composes it: the engine's resources, SDS from the secret source.
        source = CompositeSource(engine, {SECRET: EmptySecretSource()})
        routes = [*served_config_routes(store, source), *gui.routes()]
        app = build_app(store, ApiSettings(), insights, routes)
        # X-Test-Peer stands for a caller that is not on loopback (tests/api/helpers.py).
        app.middlewares.insert(0, forge_peer)
        async with ApiServer(app, "127.0.0.1", 0) as server, aiohttp.ClientSession() as session:
            yield GuiClient(f"http://127.0.0.1:{server.port}", gui, insights, session)
        tg.cancel_scope.cancel()
