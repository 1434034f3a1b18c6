"""Where resources are authored (kuma/multizone/authoring.py): a global refuses what zones own,
a federated zone refuses what global owns, both with Kuma's message; a zone stamps
``kuma.io/zone`` on Dataplanes, refuses a forged one and marks what it creates as zone-origin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kuma.api import ApiSettings
from kuma.multizone import GLOBAL_READ_ONLY_MESSAGE, ZONE_READ_ONLY_MESSAGE, Authoring
from kuma.resources import Dataplane, Mesh, ResourceKey, decode_one
from kuma.store import NotFoundError, Store
from kuma.store.memory import MemoryStore

from .helpers import ADMIN_TOKEN, Api, dataplane_yaml, error, gateway_yaml, serve

pytestmark = pytest.mark.anyio

GLOBAL = Authoring(mode="global")
FEDERATED = Authoring(mode="zone", zone="zone-1", federated=True)
LONE_ZONE = Authoring(mode="zone", zone="zone-1")

TIMEOUT = (
    "type: MeshTimeout\nmesh: default\nname: {name}\n{labels}spec:\n  targetRef:\n    kind: Mesh\n"
    "  to:\n  - targetRef:\n      kind: Mesh\n    default:\n      idleTimeout: 20s\n"
)
ZONE_LABEL = "labels:\n  kuma.io/origin: zone\n"
SECRET = "type: Secret\nmesh: default\nname: signing\ndata: c2VjcmV0\n"
GLOBAL_SECRET = "type: GlobalSecret\nname: signing\ndata: c2VjcmV0\n"
INGRESS = (
    "type: ZoneIngress\nname: zi-1\nnetworking: {address: 10.0.0.2, port: 10001, "
    "advertisedAddress: 1.2.3.4, advertisedPort: 10001}\n"
)
EGRESS = "type: ZoneEgress\nname: ze-1\nnetworking: {address: 10.0.0.3, port: 10002}\n"


async def api_for(store: MemoryStore, authoring: Authoring) -> AsyncIterator[Api]:
    async with serve(store, ApiSettings(admin_token=ADMIN_TOKEN, authoring=authoring)) as api:
        yield api


@pytest.fixture
async def global_api(store: MemoryStore) -> AsyncIterator[Api]:
    async for api in api_for(store, GLOBAL):
        yield api


@pytest.fixture
async def zone_api(store: MemoryStore) -> AsyncIterator[Api]:
    async for api in api_for(store, FEDERATED):
        yield api


@pytest.fixture
async def lone_zone_api(store: MemoryStore) -> AsyncIterator[Api]:
    async for api in api_for(store, LONE_ZONE):
        yield api


async def stored_dataplane(store: Store, name: str) -> Dataplane:
    resource = (await store.get(ResourceKey("Dataplane", "default", name))).resource
    assert isinstance(resource, Dataplane)
    return resource


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/meshes/default/dataplanes/web-01", dataplane_yaml("web-01")),
        ("/zoneingresses/zi-1", INGRESS),
        ("/zoneegresses/ze-1", EGRESS),
    ],
)
async def test_global_refuses_what_zones_author(global_api: Api, path: str, body: str) -> None:
    reply = await global_api.put(path, body)
    assert reply.status == 405
    assert reply.json == error(405, "Method not Allowed", GLOBAL_READ_ONLY_MESSAGE)
    assert (await global_api.delete(path)).status == 405
    listed = await global_api.get(path.rsplit("/", 1)[0])
    assert listed.status == 200
    assert listed.json["total"] == 0


async def test_global_authors_meshes_secrets_and_policies(global_api: Api) -> None:
    assert (await global_api.put("/meshes/demo", "type: Mesh\nname: demo\n")).status == 201
    assert (await global_api.put("/meshes/default/secrets/signing", SECRET)).status == 201
    assert (await global_api.put("/global-secrets/signing", GLOBAL_SECRET)).status == 201
    reply = await global_api.put(
        "/meshes/default/meshtimeouts/t1", TIMEOUT.format(name="t1", labels="")
    )
    assert reply.status == 201
    # Global marks nothing as zone-origin.
    stored = (await global_api.store.get(ResourceKey("MeshTimeout", "default", "t1"))).resource
    assert "kuma.io/origin" not in stored.labels
    assert (await global_api.delete("/meshes/demo")).status == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/meshes/demo", "type: Mesh\nname: demo\n"),
        ("/meshes/default/secrets/signing", SECRET),
        ("/global-secrets/signing", GLOBAL_SECRET),
    ],
)
async def test_a_federated_zone_refuses_what_global_authors(
    zone_api: Api, path: str, body: str
) -> None:
    reply = await zone_api.put(path, body)
    assert reply.status == 405
    assert reply.json == error(405, "Method not Allowed", ZONE_READ_ONLY_MESSAGE)
    assert (await zone_api.delete(path)).status == 405
    # The Mesh global sent stays: nothing was deleted.
    assert (await zone_api.store.get(ResourceKey("Mesh", "", "default"))).resource == Mesh(
        name="default"
    )


async def test_a_federated_zone_refuses_deleting_the_mesh(zone_api: Api) -> None:
    reply = await zone_api.delete("/meshes/default")
    assert reply.status == 405
    assert reply.json["detail"] == ZONE_READ_ONLY_MESSAGE
    await zone_api.store.get(ResourceKey("Mesh", "", "default"))


async def test_another_zones_ingress_is_read_only_on_a_federated_zone(zone_api: Api) -> None:
    """Global's copy of zone-2's ingress: neither replaced nor deleted here (beyond Kuma); the
    zone's own ingress stays writable."""
    remote = decode_one(INGRESS.replace("zi-1", "zi-2") + "labels: {kuma.io/origin: global}\n")
    await zone_api.store.create(remote)
    for reply in (
        await zone_api.put("/zoneingresses/zi-2", INGRESS.replace("zi-1", "zi-2")),
        await zone_api.delete("/zoneingresses/zi-2"),
    ):
        assert reply.status == 405
        assert reply.json == error(405, "Method not Allowed", ZONE_READ_ONLY_MESSAGE)
    assert (await zone_api.store.get(ResourceKey.of(remote))).resource == remote
    assert (await zone_api.put("/zoneingresses/zi-1", INGRESS)).status == 201
    assert (await zone_api.delete("/zoneingresses/zi-1")).status == 200


async def test_a_zone_stamps_its_zone_and_origin_on_dataplanes(zone_api: Api) -> None:
    reply = await zone_api.put("/meshes/default/dataplanes/web-01", dataplane_yaml("web-01"))
    assert reply.status == 201
    stored = await stored_dataplane(zone_api.store, "web-01")
    assert stored.networking is not None
    assert stored.networking.inbound[0].tags == {"kuma.io/service": "web", "kuma.io/zone": "zone-1"}
    assert stored.labels == {"kuma.io/origin": "zone"}
    # The API shows what is stored.
    shown = (await zone_api.get("/meshes/default/dataplanes/web-01")).json
    assert shown["networking"]["inbound"][0]["tags"]["kuma.io/zone"] == "zone-1"
    # An update that leaves the tag out is stamped again; the same zone is accepted.
    assert (
        await zone_api.put(
            "/meshes/default/dataplanes/web-01",
            dataplane_yaml("web-01", extra_tags={"kuma.io/zone": "zone-1", "version": "v2"}),
        )
    ).status == 200
    stored = await stored_dataplane(zone_api.store, "web-01")
    assert stored.networking is not None
    assert stored.networking.inbound[0].tags["kuma.io/zone"] == "zone-1"
    assert (await zone_api.put("/meshes/default/dataplanes/gw", gateway_yaml("gw"))).status == 201
    gateway = (await stored_dataplane(zone_api.store, "gw")).networking
    assert gateway is not None
    assert gateway.gateway is not None
    assert gateway.gateway.tags["kuma.io/zone"] == "zone-1"


async def test_a_forged_zone_is_refused_and_nothing_is_stored(zone_api: Api) -> None:
    reply = await zone_api.put(
        "/meshes/default/dataplanes/web-01",
        dataplane_yaml("web-01", extra_tags={"kuma.io/zone": "zone-2"}),
    )
    assert reply.status == 400
    [parameter] = reply.json["invalid_parameters"]
    assert parameter["field"] == 'networking.inbound[0].tags["kuma.io/zone"]'
    assert "'zone-2'" in parameter["reason"]
    with pytest.raises(NotFoundError):
        await zone_api.store.get(ResourceKey("Dataplane", "default", "web-01"))


async def test_a_federated_zone_authors_zone_origin_policies_only(zone_api: Api) -> None:
    path = "/meshes/default/meshtimeouts/t1"
    reply = await zone_api.put(path, TIMEOUT.format(name="t1", labels=""))
    assert reply.status == 400
    assert reply.json["invalid_parameters"] == [
        {"field": 'labels["kuma.io/origin"]', "reason": "the origin label must be set to 'zone'"}
    ]
    reply = await zone_api.put(path, TIMEOUT.format(name="t1", labels=ZONE_LABEL))
    assert reply.status == 201
    assert (await zone_api.delete(path)).status == 200


async def test_a_federated_zone_keeps_names_that_fit_on_global(zone_api: Api) -> None:
    name = "w" * 250
    reply = await zone_api.put(f"/meshes/default/dataplanes/{name}", dataplane_yaml(name))
    assert reply.status == 400
    assert {"field": "name", "reason": "the length of the name must be shorter"} in reply.json[
        "invalid_parameters"
    ]


async def test_a_zone_without_global_authors_everything(lone_zone_api: Api) -> None:
    assert (await lone_zone_api.put("/meshes/demo", "type: Mesh\nname: demo\n")).status == 201
    mesh = (await lone_zone_api.store.get(ResourceKey("Mesh", "", "demo"))).resource
    assert mesh.labels == {"kuma.io/origin": "zone"}
    reply = await lone_zone_api.put(
        "/meshes/default/meshtimeouts/t1", TIMEOUT.format(name="t1", labels="")
    )
    assert reply.status == 201
    reply = await lone_zone_api.put(
        "/meshes/default/dataplanes/web-01",
        dataplane_yaml("web-01", extra_tags={"kuma.io/zone": "zone-2"}),
    )
    assert reply.status == 400  # the zone tag is still this zone's


async def test_standalone_changes_nothing(api: Api) -> None:
    reply = await api.put(
        "/meshes/default/dataplanes/web-01",
        dataplane_yaml("web-01", extra_tags={"kuma.io/zone": "anywhere"}),
    )
    assert reply.status == 201
    stored = await stored_dataplane(api.store, "web-01")
    assert stored.labels == {}
    assert stored.networking is not None
    assert stored.networking.inbound[0].tags["kuma.io/zone"] == "anywhere"
