"""The resource endpoints: GET, PUT (create/update), DELETE for every type, with Kuma's codes
and error documents."""

from __future__ import annotations

import socket
from datetime import datetime

import orjson
import pytest

import kuma
from kuma.api import ApiSettings
from kuma.resources import Dataplane, Mesh, ResourceKey
from kuma.store import NotFoundError
from kuma.store.memory import MemoryStore

from .helpers import Api, dataplane_yaml, error, serve

pytestmark = pytest.mark.anyio

WEB = "/meshes/default/dataplanes/web-01"


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_index(api: Api) -> None:
    reply = await api.get("/")
    assert reply.status == 200
    doc = reply.json
    assert doc["tagline"] == "Kuma"
    assert doc["product"] == "Kuma"
    assert doc["version"] == kuma.__version__
    assert doc["hostname"] == socket.gethostname()
    assert doc["instanceId"].startswith(socket.gethostname() + "-")


async def test_put_creates_then_updates_and_get_returns_meta(api: Api) -> None:
    created = await api.put(WEB, dataplane_yaml("web-01"))
    assert (created.status, created.body) == (201, b"")
    first = (await api.get(WEB)).json
    assert list(first)[:5] == ["type", "mesh", "name", "creationTime", "modificationTime"]
    assert first["networking"]["inbound"][0]["port"] == 18080

    updated = await api.put(WEB, dataplane_yaml("web-01", port=18081))
    assert (updated.status, updated.body) == (200, b"")
    second = (await api.get(WEB)).json
    assert second["networking"]["inbound"][0]["port"] == 18081
    assert second["creationTime"] == first["creationTime"]
    assert _time(second["modificationTime"]) >= _time(first["modificationTime"])
    stored = (await api.store.get(ResourceKey("Dataplane", "default", "web-01"))).resource
    assert isinstance(stored, Dataplane)
    assert stored.networking is not None
    assert stored.networking.inbound[0].port == 18081


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/meshes/demo", '{"type": "Mesh", "name": "demo"}', "application/json"),
        ("/meshes/demo", "type: Mesh\nname: demo\n", "application/yaml"),
        ("/meshes/demo", "type: Mesh\nname: demo\n", None),
        (
            "/zoneingresses/zi-1",
            "type: ZoneIngress\nname: zi-1\nzone: east\n"
            "networking: {address: 10.0.0.2, port: 10001, advertisedAddress: 1.2.3.4,"
            " advertisedPort: 10001}\n",
            "application/yaml",
        ),
        (
            "/zoneegresses/ze-1",
            '{"type": "ZoneEgress", "name": "ze-1", "zone": "east",'
            ' "networking": {"address": "10.0.0.3", "port": 10002}}',
            "application/json",
        ),
    ],
)
async def test_round_trip_of_every_global_type(
    api: Api, path: str, body: str, content_type: str | None
) -> None:
    collection = path.rsplit("/", 1)[0]
    assert (await api.put(path, body, content_type=content_type)).status == 201
    got = await api.get(path)
    assert got.status == 200
    assert got.json["name"] == path.rsplit("/", 1)[1]
    assert "mesh" not in got.json
    names = [item["name"] for item in (await api.get(collection)).json["items"]]
    assert path.rsplit("/", 1)[1] in names
    assert (await api.delete(path)).status == 200
    assert (await api.get(path)).status == 404


async def test_get_of_a_missing_resource(api: Api) -> None:
    reply = await api.get(WEB)
    assert reply.status == 404
    assert reply.json == error(404, "Could not retrieve a resource", "Not found")
    assert (await api.get("/zoneingresses/nope")).status == 404


async def test_requests_in_a_missing_mesh(api: Api) -> None:
    missing = error(404, "Failed to retrieve Mesh", "Not found")
    for path in ("/meshes/nope/dataplanes", "/meshes/nope/dataplanes/web-01"):
        reply = await api.get(path)
        assert (reply.status, reply.json) == (404, missing)
    assert (await api.delete("/meshes/nope/dataplanes/web-01")).json == missing


async def test_dataplane_in_a_mesh_that_does_not_exist(api: Api) -> None:
    reply = await api.put("/meshes/nope/dataplanes/web-01", dataplane_yaml("web-01", mesh="nope"))
    assert reply.status == 400
    assert reply.json == error(
        400,
        "Could not create a resource",
        "Mesh is not found",
        [("mesh", "mesh of name nope is not found")],
    )
    assert (await api.store.list("Dataplane")).total == 0


async def test_validation_errors_list_every_violation(api: Api) -> None:
    body = (
        "type: Dataplane\nmesh: default\nname: web-01\nnetworking:\n  address: 0.0.0.0\n"
        "  inbound:\n  - port: 0\n    tags: {version: v1}\n"
    )
    reply = await api.put(WEB, body)
    assert reply.status == 400
    assert reply.json == error(
        400,
        "Could not process a resource",
        "Resource is not valid",
        [
            ("networking.address", "must not be 0.0.0.0 or ::"),
            ("networking.inbound[0].port", "port must be in the range [1, 65535]"),
            ('networking.inbound[0].tags["kuma.io/service"]', "tag has to exist"),
        ],
    )
    await api.put(WEB, dataplane_yaml("web-01"))
    update = await api.put(WEB, dataplane_yaml("web-01", port=0))
    assert update.json["title"] == "Could not process a resource"
    assert update.json["invalid_parameters"] == [
        {"field": "networking.inbound[0].port", "reason": "port must be in the range [1, 65535]"}
    ]


@pytest.mark.parametrize(
    ("path", "body", "parameters"),
    [
        (
            "/meshes/default/dataplanes/other",
            dataplane_yaml("web-01"),
            [("name", "name from the URL has to be the same as in body")],
        ),
        (
            "/meshes/default/dataplanes/web-01",
            dataplane_yaml("web-01", mesh="demo"),
            [("mesh", "mesh from the URL has to be the same as in body")],
        ),
        (
            # Kuma reads the body as the URL's type and then compares the types.
            "/zoneingresses/demo",
            "type: Mesh\nname: demo\nnetworking: {port: 10001}\n",
            [("type", "type from the URL has to be the same as in body")],
        ),
        (
            "/meshes/default/dataplanes/web-01",
            dataplane_yaml("web-01").replace("type: Dataplane", "type: Router"),
            [("type", "type from the URL has to be the same as in body")],
        ),
        (
            "/meshes/other",
            "type: Mesh\nname: demo\n",
            [("name", "name from the URL has to be the same as in body")],
        ),
    ],
)
async def test_url_and_body_must_agree(
    api: Api, path: str, body: str, parameters: list[tuple[str, str]]
) -> None:
    reply = await api.put(path, body)
    assert reply.status == 400
    assert reply.json == error(
        400, "Could not process a resource", "Resource is not valid", parameters
    )


async def test_delete(api: Api) -> None:
    await api.put(WEB, dataplane_yaml("web-01"))
    deleted = await api.delete(WEB)
    assert (deleted.status, deleted.body) == (200, b"")
    with pytest.raises(NotFoundError):
        await api.store.get(ResourceKey("Dataplane", "default", "web-01"))
    again = await api.delete(WEB)
    assert (again.status, again.json) == (
        404,
        error(404, "Could not delete a resource", "Not found"),
    )


async def test_a_mesh_with_dataplanes_cannot_be_deleted(api: Api) -> None:
    await api.put(WEB, dataplane_yaml("web-01"))
    refused = await api.delete("/meshes/default")
    assert refused.status == 400
    assert refused.json == error(
        400,
        "Could not delete a resource",
        "Resource is not valid",
        [("mesh", "unable to delete mesh, there are still some dataplanes attached")],
    )
    assert (await api.get("/meshes/default")).status == 200
    await api.delete(WEB)
    assert (await api.delete("/meshes/default")).status == 200
    assert (await api.get("/meshes")).json == {"total": 0, "items": [], "next": None}


async def test_unknown_paths_and_methods_answer_in_kumas_shape(api: Api) -> None:
    missing = await api.get("/nothing/here")
    assert missing.status == 404
    assert missing.json == error(404, "Not Found", "no such path: /nothing/here")
    post = await api.call("POST", "/meshes", "type: Mesh\nname: x\n")
    assert post.status == 405
    assert post.json["title"] == "Method not Allowed"
    assert "POST is not allowed on /meshes" in post.json["detail"]
    assert post.headers["Content-Type"].startswith("application/json")


async def test_the_response_is_json(api: Api) -> None:
    await api.put(WEB, dataplane_yaml("web-01"))
    reply = await api.get(WEB)
    assert reply.headers["Content-Type"].startswith("application/json")
    assert orjson.loads(reply.body)["name"] == "web-01"


async def test_what_get_returns_can_be_put_back(api: Api) -> None:
    await api.put(WEB, dataplane_yaml("web-01"))
    got = await api.get(WEB)
    again = await api.put(WEB, got.body, content_type="application/json")
    assert again.status == 200
    assert (await api.get(WEB)).json["networking"] == got.json["networking"]


async def test_the_index_reports_the_configured_instance_id(store: MemoryStore) -> None:
    async with serve(store, ApiSettings(instance_id="cp-7")) as api:
        assert (await api.get("/")).json["instanceId"] == "cp-7"


def _mtls_mesh(enabled: str, *backends: str) -> str:
    listed = "".join(f"\n    - name: {b}\n      type: builtin" for b in backends)
    head = f"type: Mesh\nname: default\nmtls:\n  enabledBackend: '{enabled}'\n  backends:"
    return head + (listed or " []")


async def test_changing_the_ca_while_mtls_is_on_is_refused_as_kuma_does(api: Api) -> None:
    assert (await api.put("/meshes/default", _mtls_mesh("ca-1", "ca-1"))).status == 200
    # Kuma's ValidateUpdate: another enabled backend while mTLS stays on.
    refused = await api.put("/meshes/default", _mtls_mesh("ca-2", "ca-2"))
    assert refused.status == 400
    assert refused.json == error(
        400,
        "Could not process a resource",
        "Resource is not valid",
        [
            (
                "mtls.enabledBackend",
                "Changing CA when mTLS is enabled is forbidden. "
                "Disable mTLS first and then change the CA",
            )
        ],
    )
    stored = (await api.store.get(ResourceKey("Mesh", "", "default"))).resource
    assert isinstance(stored, Mesh)
    assert "ca-1" in orjson.dumps(stored.mtls).decode()
    # Kuma's way: mTLS off first (backends may stay), then the other CA.
    assert (await api.put("/meshes/default", _mtls_mesh("", "ca-1"))).status == 200
    assert (await api.put("/meshes/default", _mtls_mesh("ca-2", "ca-2"))).status == 200
