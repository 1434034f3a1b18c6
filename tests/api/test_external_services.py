"""ExternalService through the REST API at Kuma's path (/meshes/{mesh}/external-services),
and where it may be written in multi-zone."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kuma.api import ApiSettings
from kuma.multizone import ZONE_READ_ONLY_MESSAGE, Authoring
from kuma.resources import ExternalService, ResourceKey
from kuma.store.memory import MemoryStore

from .helpers import ADMIN_TOKEN, Api, error, serve

pytestmark = pytest.mark.anyio

PATH = "/meshes/default/external-services/httpbin"
BODY = (
    "type: ExternalService\nmesh: default\nname: httpbin\n"
    "networking:\n  address: httpbin.org:443\n  tls: {{enabled: true, serverName: {sni}}}\n"
    "tags:\n  kuma.io/service: httpbin\n  kuma.io/protocol: http\n"
)


async def _api(store: MemoryStore, authoring: Authoring) -> AsyncIterator[Api]:
    async with serve(store, ApiSettings(admin_token=ADMIN_TOKEN, authoring=authoring)) as api:
        yield api


async def test_put_get_list_delete(store: MemoryStore) -> None:
    async for api in _api(store, Authoring()):
        assert (await api.put(PATH, BODY.format(sni="httpbin.org"))).status == 201
        got = (await api.get(PATH)).json
        assert got["networking"] == {
            "address": "httpbin.org:443",
            "tls": {"enabled": True, "serverName": "httpbin.org"},
        }
        assert got["tags"] == {"kuma.io/service": "httpbin", "kuma.io/protocol": "http"}
        listed = (await api.get("/meshes/default/external-services")).json
        assert [i["name"] for i in listed["items"]] == ["httpbin"]
        assert (await api.put(PATH, BODY.format(sni="other.org"))).status == 200
        stored = (await store.get(ResourceKey("ExternalService", "default", "httpbin"))).resource
        assert isinstance(stored, ExternalService)
        assert stored.networking is not None
        assert stored.networking.tls is not None
        assert stored.networking.tls.server_name == "other.org"
        assert (await api.delete(PATH)).status == 200
        assert (await api.get(PATH)).status == 404


async def test_invalid_is_refused_with_kuma_fields_and_nothing_is_stored(
    store: MemoryStore,
) -> None:
    async for api in _api(store, Authoring()):
        body = BODY.format(sni='""').replace("httpbin.org:443", "httpbin.org")
        reply = await api.put(PATH, body)
        assert reply.status == 400
        assert reply.json == error(
            400,
            "Could not process a resource",
            "Resource is not valid",
            [
                ("networking.address", "unable to parse address"),
                ("networking.address", "address has to be a valid IP address or a domain name"),
                ("networking.address", "unable to parse port in address"),
                ("networking.address", "port must be in the range [1, 65535]"),
                ("networking.tls.serverName", "cannot be empty"),
            ],
        )
        assert (await store.list("ExternalService")).items == ()


async def test_a_federated_zone_refuses_it_global_authors_it(store: MemoryStore) -> None:
    async for api in _api(store, Authoring(mode="zone", zone="zone-1", federated=True)):
        reply = await api.put(PATH, BODY.format(sni="httpbin.org"))
        assert reply.json == error(405, "Method not Allowed", ZONE_READ_ONLY_MESSAGE)
    async for api in _api(store, Authoring(mode="global")):
        assert (await api.put(PATH, BODY.format(sni="httpbin.org"))).status == 201
