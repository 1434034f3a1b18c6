"""MeshGateway as a resource: its document form, the REST API at Kuma's path
(/meshes/{mesh}/meshgateways), how it travels to zones and who authors it (Kuma's own validator
cases run in tests/resources/test_kuma_cases.py)."""

from __future__ import annotations

import pytest

from kuma.api import ApiSettings
from kuma.kds import codec, mapping
from kuma.multizone import ZONE_READ_ONLY_MESSAGE, Authoring
from kuma.resources import (
    DecodeError,
    Mesh,
    MeshGateway,
    ResourceKey,
    decode_one,
    encode_yaml,
    validate,
)
from kuma.store.memory import MemoryStore
from tests.api.helpers import ADMIN_TOKEN, error, serve

GATEWAY = """\
type: MeshGateway
mesh: default
name: edge
selectors:
  - match:
      kuma.io/service: edge-gateway
tags:
  product: edge
conf:
  listeners:
    - hostname: foo.example.com
      port: 8080
      protocol: HTTP
      crossMesh: false
      resources:
        connectionLimit: 100
      tags:
        name: http
    - port: 8443
      protocol: HTTPS
      tls:
        mode: TERMINATE
        certificates:
          - secret: edge-cert
"""
PATH = "/meshes/default/meshgateways/edge"


def test_the_document_round_trips_exactly() -> None:
    gateway = decode_one(GATEWAY)
    assert isinstance(gateway, MeshGateway)
    assert validate(gateway) == []
    assert gateway.conf is not None
    http, https = gateway.conf.listeners
    assert (http.effective_hostname, http.port, http.protocol) == ("foo.example.com", 8080, "HTTP")
    assert https.effective_hostname == "*"
    assert https.tls is not None
    assert https.tls.certificates[0].secret == "edge-cert"
    assert decode_one(encode_yaml([gateway])) == gateway


def test_an_unknown_protocol_is_a_decode_error_naming_the_field() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_one(GATEWAY.replace("protocol: HTTP\n", "protocol: GRPC\n"))
    assert "conf.listeners[0].protocol" in str(caught.value)


def _gateway(text: str = GATEWAY) -> MeshGateway:
    gateway = decode_one(text)
    assert isinstance(gateway, MeshGateway)
    return gateway


def test_goes_down_to_zones_under_kuma_hashed_name_and_travels_exactly() -> None:
    gateway = _gateway()
    down = mapping.to_zone(gateway)
    assert isinstance(down, MeshGateway)
    assert down.name == mapping.hashed_name("default", "edge")
    assert down.labels == {"kuma.io/origin": "global"}
    assert (down.selectors, down.tags, down.conf) == (gateway.selectors, gateway.tags, gateway.conf)
    sent = codec.encode(down)
    assert codec.decode(sent.type_url, sent.name, sent.body) == down
    kinds = mapping.global_kinds()
    assert kinds.index("Mesh") < kinds.index("Secret") < kinds.index("MeshGateway")
    assert mapping.to_global(gateway, "zone-1") is None


@pytest.mark.anyio
async def test_rest_crud_kuma_violations_and_authoring() -> None:
    store = MemoryStore()
    await store.create(Mesh(name="default"))
    settings = ApiSettings(admin_token=ADMIN_TOKEN, authoring=Authoring(mode="global"))
    async with serve(store, settings) as api:
        assert (await api.put(PATH, GATEWAY)).status == 201
        got = (await api.get(PATH)).json
        assert got["conf"]["listeners"][0]["resources"] == {"connectionLimit": 100}
        listed = (await api.get("/meshes/default/meshgateways")).json
        assert [i["name"] for i in listed["items"]] == ["edge"]
        clash = GATEWAY.replace("port: 8443", "port: 8080")
        reply = await api.put(PATH, clash)
        assert reply.json == error(
            400,
            "Could not process a resource",
            "Resource is not valid",
            [
                ("conf.listeners[0]", "protocol conflicts with other listeners on this port"),
                ("conf.listeners[1]", "protocol conflicts with other listeners on this port"),
            ],
        )
        stored = (await store.get(ResourceKey("MeshGateway", "default", "edge"))).resource
        assert stored == decode_one(GATEWAY)
        assert (await api.delete(PATH)).status == 200
        assert (await api.get(PATH)).status == 404
    zone = Authoring(mode="zone", zone="zone-1", federated=True)
    async with serve(store, ApiSettings(admin_token=ADMIN_TOKEN, authoring=zone)) as api:
        reply = await api.put(PATH, GATEWAY)
        assert reply.json == error(405, "Method not Allowed", ZONE_READ_ONLY_MESSAGE)
    store.close()
