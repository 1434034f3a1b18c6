"""The REST API on a real socket (127.0.0.1, a free port) over a store the test owns, and a
small aiohttp client.

Access control is by the TCP peer address, and every test connection comes from loopback. To
exercise the non-loopback path without leaving the machine, :func:`serve` puts one test-only
middleware in front of the application that replaces the peer address of a request carrying
``X-Test-Peer`` (``request.clone(remote=...)``), exactly the value aiohttp would otherwise have
read from the socket. Everything after it (routing, the access middleware, the handlers) is the
production chain; ``test_access.py`` also checks on a mocked transport that the address really
comes from the socket's peer name and never from a header.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from kuma.api import ApiServer, ApiSettings, InsightProvider, build_app
from kuma.store import Store

PEER_HEADER = "X-Test-Peer"
ADMIN_TOKEN = "s3cret-admin-token"


@web.middleware
async def forge_peer(request: web.Request, handler: Handler) -> web.StreamResponse:
    peer = request.headers.get(PEER_HEADER)
    if peer is not None:
        request = request.clone(remote=peer)
    return await handler(request)


@dataclass
class Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Api:
    base: str
    store: Store
    session: aiohttp.ClientSession

    async def call(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        *,
        content_type: str | None = "application/yaml",
        headers: Mapping[str, str] | None = None,
        peer: str | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if body is not None and content_type is not None:
            sent["Content-Type"] = content_type
        if peer is not None:
            sent[PEER_HEADER] = peer
        data = body.encode() if isinstance(body, str) else body
        # A file-like payload: aiohttp warns about large raw byte bodies (and it still sends
        # Content-Length, since the size is known).
        payload = io.BytesIO(data) if data is not None else None
        async with self.session.request(method, self.base + path, data=payload, headers=sent) as r:
            return Reply(r.status, await r.read(), dict(r.headers))

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)

    async def put(self, path: str, body: bytes | str, **kwargs: Any) -> Reply:
        return await self.call("PUT", path, body, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("DELETE", path, **kwargs)


@asynccontextmanager
async def serve(
    store: Store,
    settings: ApiSettings | None = None,
    insights: InsightProvider | None = None,
    host: str = "127.0.0.1",
    extra_routes: Sequence[web.RouteDef] = (),
) -> AsyncIterator[Api]:
    settings = settings or ApiSettings(admin_token=ADMIN_TOKEN)
    app = build_app(store, settings, insights, extra_routes)
    app.middlewares.insert(0, forge_peer)
    async with (
        ApiServer(app, host, 0) as server,
        aiohttp.ClientSession() as session,
    ):
        yield Api(f"http://{host}:{server.port}", store, session)


def dataplane_yaml(
    name: str,
    mesh: str = "default",
    port: int = 18080,
    service: str = "web",
    extra_tags: Mapping[str, str] | None = None,
) -> str:
    tags = {"kuma.io/service": service, **(extra_tags or {})}
    tag_lines = "".join(f"      {key}: {value}\n" for key, value in tags.items())
    return (
        f"type: Dataplane\nmesh: {mesh}\nname: {name}\nnetworking:\n  address: 10.0.0.1\n"
        f"  inbound:\n  - port: {port}\n    servicePort: 8080\n    tags:\n{tag_lines}"
    )


def gateway_yaml(name: str, kind: str = "DELEGATED", mesh: str = "default") -> str:
    return (
        f"type: Dataplane\nmesh: {mesh}\nname: {name}\nnetworking:\n  address: 10.0.0.9\n"
        f"  gateway:\n    type: {kind}\n    tags:\n      kuma.io/service: edge-{name}\n"
    )


def error(
    status: int,
    title: str,
    detail: str,
    parameters: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Kuma's error document, spelled out for exact comparison."""
    doc: dict[str, Any] = {"type": "/std-errors", "status": status, "title": title}
    doc["detail"] = detail
    if parameters:
        doc["invalid_parameters"] = [{"field": f, "reason": r} for f, r in parameters]
    doc["details"] = detail
    if parameters:
        doc["causes"] = [{"field": f, "message": r} for f, r in parameters]
    return doc
