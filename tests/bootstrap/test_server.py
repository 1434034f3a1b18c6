"""``POST /bootstrap`` over real HTTP on the dp server port, beside ADS on that same port."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from grpclib.client import Channel

from kuma.bootstrap import GeneratorParams, bootstrap_protocol
from kuma.bootstrap.handler import named_by_certificate
from kuma.resources import Mesh, decode_one
from kuma.store.memory import MemoryStore
from kuma.xds.generate.types import CLUSTER
from kuma.xds.server import serve
from tests.xds.fakes import DEADLINE, FakeSource, delta_state, delta_stream

from .samples import dataplane, load_yaml, request

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def dp_server(
    store: MemoryStore, params: GeneratorParams | None = None, source: FakeSource | None = None
) -> AsyncIterator[int]:
    """ADS and the bootstrap on one free loopback port, as kuma-cp runs them."""
    async with (
        bootstrap_protocol(store, params or GeneratorParams()) as http,
        anyio.create_task_group() as tg,
    ):
        run = partial(serve, source or FakeSource(), "127.0.0.1", 0, http1=http)
        port: int = await tg.start(run)
        yield port
        tg.cancel_scope.cancel()


async def store_with_default_mesh() -> MemoryStore:
    store = MemoryStore()
    await store.create(Mesh(name="default"))
    return store


async def post(
    port: int, body: bytes | dict[str, Any], *, json_reply: bool = False, host: str | None = None
) -> tuple[int, bytes, str]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Accept": "application/json"} if json_reply else {}
    if host is not None:
        headers["Host"] = host
    url = f"http://127.0.0.1:{port}/bootstrap"
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        # A file-like body: aiohttp warns about large raw bytes.
        session.post(url, data=io.BytesIO(data), headers=headers) as reply,
    ):
        return reply.status, await reply.read(), reply.headers.get("Content-Type", "")


def causes(body: bytes) -> list[tuple[str, str]]:
    document = orjson.loads(body)
    assert document["type"] == "/std-errors"
    assert [(p["field"], p["reason"]) for p in document["invalid_parameters"]] == [
        (c["field"], c["message"]) for c in document["causes"]
    ]
    return [(c["field"], c["message"]) for c in document["causes"]]


async def test_yaml_reply_points_ads_at_the_host_and_port_asked() -> None:
    async with dp_server(await store_with_default_mesh()) as port:
        status, body, kind = await post(port, request(), host=f"localhost:{port}")
    assert status == 200, body
    assert kind.startswith("text/x-yaml")
    bootstrap = load_yaml(body.decode())
    assert bootstrap["node"]["id"] == "default.web-01"
    (cluster,) = bootstrap["staticResources"]["clusters"]
    endpoint = cluster["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]
    assert endpoint["address"]["socketAddress"] == {"address": "localhost", "portValue": port}
    assert cluster["dnsLookupFamily"] == "V4_PREFERRED"  # the request came over IPv4


async def test_json_reply_is_kumas_envelope() -> None:
    params = GeneratorParams(xds_transport="GRPC")
    async with dp_server(await store_with_default_mesh(), params) as port:
        status, body, kind = await post(port, request(), json_reply=True)
    assert status == 200, body
    assert kind == "application/json"
    envelope = orjson.loads(body)
    bootstrap = load_yaml(base64.b64decode(envelope["bootstrap"]).decode())
    assert bootstrap["dynamicResources"]["adsConfig"]["apiType"] == "GRPC"
    assert envelope["kumaSidecarConfiguration"]["networking"] == {
        "isUsingTransparentProxy": False,
        "address": "192.168.0.10",
        "corefileTemplate": None,
    }


async def test_ads_works_on_the_same_port() -> None:
    source = FakeSource()
    source.proxy().put(CLUSTER, "a")
    async with dp_server(await store_with_default_mesh(), source=source) as port:
        status, _, _ = await post(port, request())
        assert status == 200
        with anyio.fail_after(DEADLINE):
            async with Channel("127.0.0.1", port) as channel, delta_stream(channel) as client:
                await client.send(CLUSTER)
                assert set(delta_state(await client.recv())) == {"a"}
        # and HTTP/1 still works after an HTTP/2 connection came and went
        assert (await post(port, request()))[0] == 200


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{", "the body is not a JSON bootstrap request"),
        (b"[]", "Expected `object`, got `array`"),
        (b'{"mesh": 1, "name": "x"}', "mesh: Expected `str`, got `int`"),
        (b'{"proxyType": "dataplane"}', "mesh and name: required when dataplaneResource"),
        (b'{"mesh": "default"}', "name: required when dataplaneResource"),
    ],
)
async def test_bad_requests_get_400_naming_the_problem(body: bytes, expected: str) -> None:
    async with dp_server(await store_with_default_mesh()) as port:
        status, reply, _ = await post(port, body)
        assert status == 400
        assert expected in orjson.loads(reply)["detail"]
        # The server keeps serving.
        assert (await post(port, request()))[0] == 200


async def test_invalid_dataplane_gets_422_with_every_field() -> None:
    broken = dataplane(
        address="0.0.0.0",
        inbound=[{"port": 70000, "tags": {"kuma.io/protocol": "smtp"}}],
    )
    async with dp_server(await store_with_default_mesh()) as port:
        status, body, _ = await post(port, request(broken))
    assert status == 422
    assert causes(body) == [
        ("networking.address", "must not be 0.0.0.0 or ::"),
        ("networking.inbound[0].port", "port must be in the range [1, 65535]"),
        (
            'networking.inbound[0].tags["kuma.io/protocol"]',
            'tag "kuma.io/protocol" has an invalid value "smtp". '
            "Allowed values: grpc, http, http2, kafka, tcp",
        ),
        ('networking.inbound[0].tags["kuma.io/service"]', "tag has to exist"),
    ]


async def test_undecodable_resource_gets_422_naming_the_field() -> None:
    async with dp_server(await store_with_default_mesh()) as port:
        status, body, _ = await post(port, request(dataplane(adress="1.2.3.4")))
    assert status == 422
    assert causes(body) == [("networking.adress", "unknown field")]


async def test_transparent_proxy_with_outbounds_is_refused() -> None:
    tp = dataplane(
        transparentProxying={"redirectPortInbound": 15006, "redirectPortOutbound": 15001}
    )
    async with dp_server(await store_with_default_mesh()) as port:
        status, body, _ = await post(port, request(tp))
        assert status == 422
        assert causes(body) == [
            (
                "networking.outbound",
                "should be empty since dataplane is in Transparent Proxying mode",
            )
        ]
        without = dataplane(
            outbound=None,
            transparentProxying={"redirectPortInbound": 15006, "redirectPortOutbound": 15001},
        )
        assert (await post(port, request(without)))[0] == 200


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"name": "web-02"}, [("name", '"web-02" does not match the name of the Dataplane')]),
        ({"mesh": "other"}, [("mesh", '"other" does not match the mesh of the Dataplane')]),
    ],
)
async def test_name_or_mesh_disagreeing_with_the_resource_is_refused(
    fields: dict[str, str], expected: list[tuple[str, str]]
) -> None:
    async with dp_server(await store_with_default_mesh()) as port:
        status, body, _ = await post(port, request(**fields))
    assert status == 422
    [(field, message)] = causes(body)
    assert (field, message[: len(expected[0][1])]) == expected[0]


async def test_a_missing_mesh_is_refused() -> None:
    async with dp_server(MemoryStore()) as port:
        status, body, _ = await post(port, request())
    assert status == 422
    assert causes(body) == [("mesh", 'mesh "default" does not exist')]


async def test_a_stored_dataplane_is_served_by_name() -> None:
    store = await store_with_default_mesh()
    async with dp_server(store) as port:
        status, _, _ = await post(port, request(""))
        assert status == 404  # not there yet: kuma-dp asks again later
        await store.create(decode_one(orjson.dumps(dataplane(admin={"port": 9555}))))
        status, body, _ = await post(port, request(""))
    assert status == 200
    bootstrap = load_yaml(body.decode())
    assert bootstrap["admin"]["address"]["socketAddress"]["portValue"] == 9555
    assert "dataplane.resource" not in bootstrap["node"]["metadata"]


async def test_other_proxy_types_paths_and_methods() -> None:
    async with dp_server(await store_with_default_mesh()) as port:
        status, body, _ = await post(port, request(proxyType="gateway"))
        assert status == 422
        assert causes(body)[0][0] == "proxyType"
        # An egress brings a ZoneEgress, not a Dataplane.
        status, body, _ = await post(port, request(proxyType="egress"))
        assert status == 422
        assert causes(body)[0] == (
            "type",
            'must be ZoneEgress for proxyType "egress", got Dataplane',
        )
        async with aiohttp.ClientSession(trust_env=False) as session:
            async with session.get(f"http://127.0.0.1:{port}/bootstrap") as reply:
                assert reply.status == 405
                assert reply.headers["Allow"] == "POST"
            async with session.post(f"http://127.0.0.1:{port}/other", data=b"{}") as reply:
                assert reply.status == 404


async def test_a_zone_ingress_bootstrap_as_kumas() -> None:
    """``--proxy-type ingress``: node ``.<name>`` (no mesh), cluster ``ingress``, admin port
    from the ZoneIngress; a Dataplane under that proxy type is refused naming the type."""
    ingress = {
        "type": "ZoneIngress",
        "name": "ingress-1",
        "networking": {"address": "10.0.0.9", "port": 10001, "admin": {"port": 9902}},
    }
    async with dp_server(await store_with_default_mesh()) as port:
        status, body, _ = await post(
            port, request(ingress, proxyType="ingress", mesh="", name="ingress-1")
        )
        assert status == 200, body
        node = load_yaml(body.decode())["node"]
        assert (node["id"], node["cluster"]) == (".ingress-1", "ingress")
        assert node["metadata"]["dataplane.proxyType"] == "ingress"
        assert node["metadata"]["dataplane.admin.port"] == "9902"
        status, body, _ = await post(port, request(proxyType="ingress"))
        assert status == 422
        assert causes(body)[0][0] == "type"


async def test_a_body_that_is_too_large_is_refused() -> None:
    big = request(dataplane(address="10.0.0.1"), padding="x" * (1024 * 1024 + 1))
    async with dp_server(await store_with_default_mesh()) as port:
        status, _, _ = await post(port, big)
        assert status == 413
        assert (await post(port, request()))[0] == 200


async def test_a_name_the_certificate_lacks_is_refused_and_a_missing_token_too() -> None:
    """Kuma's checks at the bootstrap: the host kuma-dp used must be one the dp server's
    certificate names (else Envoy could never connect), and with authentication on the
    request must carry a token (verified on the ADS stream, not here)."""
    store = await store_with_default_mesh()
    params = GeneratorParams(
        tls=True, trusted_ca="CA", certificate_names=frozenset({"localhost", "127.0.0.1"}),
        require_token=True,
    )  # fmt: skip
    async with dp_server(store, params) as port:
        status, body, _ = await post(port, request(dataplaneToken="t"), host=f"cp.example:{port}")
        assert status == 400
        detail = orjson.loads(body)["detail"]
        assert (
            "as 'cp.example', which its certificate does not name (127.0.0.1, localhost)" in detail
        )
        status, body, _ = await post(port, request(), host=f"localhost:{port}")
        assert status == 422
        assert causes(body)[0][0] == "dataplaneToken"
        status, body, _ = await post(port, request(dataplaneToken="t"), host=f"localhost:{port}")
        assert status == 200, body


def test_wildcard_names() -> None:
    names = frozenset({"*.mesh.example", "10.0.0.1"})
    assert named_by_certificate("cp.mesh.example", names)
    assert named_by_certificate("CP.mesh.example.", names)
    assert named_by_certificate("10.0.0.1", names)
    assert not named_by_certificate("a.cp.mesh.example", names)
    assert not named_by_certificate("mesh.example", names)
