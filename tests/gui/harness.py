"""A GUI on a real socket over a store and an engine the test owns, with an aiohttp client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
import orjson
from multidict import CIMultiDict

from kuma.api import ApiServer, ApiSettings, build_app
from kuma.gui import Gui
from kuma.inspect import served_config_routes
from kuma.store import Store
from kuma.xds.engine import Engine


@dataclass
class FakeInsights:
    """InsightProvider: proxies listed in ``online`` have an open subscription."""

    online: set[str] = field(default_factory=set)

    def insight(self, mesh: str, name: str) -> Mapping[str, Any] | None:
        if f"{mesh}/{name}" not in self.online:
            return {}
        return {
            "subscriptions": [
                {
                    "id": "s1",
                    "controlPlaneInstanceId": "cp-1",
                    "connectTime": "2026-01-01T00:00:00.000000Z",
                    "status": {"total": {"responsesSent": "4", "responsesRejected": "1"}},
                    "version": {"envoy": {"version": "1.32.0"}},
                }
            ]
        }


@dataclass
class GuiClient:
    base: str
    gui: Gui
    session: aiohttp.ClientSession

    async def get(self, path: str, **headers: str) -> tuple[int, bytes, Mapping[str, str]]:
        async with self.session.get(self.base + path, headers=headers) as reply:
            return reply.status, await reply.read(), CIMultiDict(reply.headers)

    async def json(self, path: str, status: int = 200) -> Any:
        code, body, _ = await self.get(path)
        assert code == status, body
        return orjson.loads(body)


@asynccontextmanager
async def serve_gui(store: Store, insights: FakeInsights) -> AsyncIterator[GuiClient]:
    engine = Engine()
    gui = Gui(store, insights, instance_id="cp-test")
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run, store)
        await engine.wait_synced()
        await tg.start(gui.run)
        routes = [*served_config_routes(store, engine), *gui.routes()]
        app = build_app(store, ApiSettings(), insights, routes)
        async with ApiServer(app, "127.0.0.1", 0) as server, aiohttp.ClientSession() as session:
            yield GuiClient(f"http://127.0.0.1:{server.port}", gui, session)
        tg.cancel_scope.cancel()
