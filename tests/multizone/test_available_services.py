"""The zone's availableServices, kept incrementally by the engine's observer, against Kuma's
rules (pkg/xds/ingress/dataplane.go) and against Kuma's full recompute (``from_scratch``)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from kuma.multizone.available_services import from_scratch
from kuma.resources import (
    Dataplane,
    ExternalService,
    Mesh,
    Resource,
    ResourceMeta,
    ZoneIngress,
    from_document,
)
from kuma.resources.model import AvailableService
from kuma.store import Operation, ResourceEvent
from kuma.xds.engine import Engine
from kuma.xds.engine.available_services import AvailableServicesIndex
from kuma.xds.engine.handlers import default_handlers

_NOW = datetime(2026, 12, 4, tzinfo=UTC)


def event(resource: Resource, operation: Operation = Operation.UPDATE, version: str = "1") -> Any:
    return ResourceEvent(operation, resource, ResourceMeta(version, _NOW, _NOW), 1)


def delete(resource: Resource) -> Any:
    return event(resource, Operation.DELETE)


def mesh(name: str = "default", *, egress: bool = False) -> Mesh:
    doc: dict[str, Any] = {"type": "Mesh", "name": name}
    if egress:
        doc["routing"] = {"zoneEgress": True}
    resource = from_document(doc)
    assert isinstance(resource, Mesh)
    return resource


def dataplane(
    name: str, *inbounds: dict[str, Any], mesh: str = "default", address: str = "10.0.0.1"
) -> Dataplane:
    resource = from_document(
        {
            "type": "Dataplane",
            "mesh": mesh,
            "name": name,
            "networking": {
                "address": address,
                "inbound": [{"port": 10000 + i, **inbound} for i, inbound in enumerate(inbounds)],
            },
        }
    )
    assert isinstance(resource, Dataplane)
    return resource


def inbound(service: str, **tags: str) -> dict[str, Any]:
    return {"tags": {"kuma.io/service": service, **tags}}


def external(name: str, service: str, zone: str | None, mesh: str = "default") -> ExternalService:
    tags = {"kuma.io/service": service}
    if zone is not None:
        tags["kuma.io/zone"] = zone
    resource = from_document(
        {
            "type": "ExternalService",
            "mesh": mesh,
            "name": name,
            "networking": {"address": f"{name}.example.com:443"},
            "tags": tags,
        }
    )
    assert isinstance(resource, ExternalService)
    return resource


def ingress(name: str = "ingress-1", zone: str = "") -> ZoneIngress:
    resource = from_document(
        {
            "type": "ZoneIngress",
            "name": name,
            "zone": zone,
            "networking": {"address": "10.0.0.9", "port": 10001},
        }
    )
    assert isinstance(resource, ZoneIngress)
    return resource


def engine_with_index(zone: str = "") -> tuple[Engine, AvailableServicesIndex, list[int]]:
    engine = Engine(handlers=default_handlers(zone=zone))
    calls: list[int] = []
    index = AvailableServicesIndex(zone, on_change=lambda: calls.append(1))
    engine.inputs.add_observer(index)
    return engine, index, calls


def row(
    mesh: str, instances: int, tags: dict[str, str], external: bool = False
) -> AvailableService:
    return AvailableService(tags=tags, instances=instances, mesh=mesh, external_service=external)


SVC = "kuma.io/service"


def test_one_entry_per_tag_set_with_its_instance_count_in_kumas_order() -> None:
    engine, index, _ = engine_with_index()
    engine.apply_now(
        [
            event(mesh()),
            event(dataplane("web-1", inbound("web", version="v1"))),
            event(dataplane("web-2", inbound("web", version="v1"))),
            event(dataplane("web-3", inbound("web", version="v2"))),
            # Two inbounds of one Dataplane are two instances (Kuma counts inbounds).
            event(dataplane("api-1", inbound("api"), inbound("api"))),
        ]
    )
    assert index.entries() == (
        row("default", 2, {SVC: "api"}),
        row("default", 2, {SVC: "web", "version": "v1"}),
        row("default", 1, {SVC: "web", "version": "v2"}),
    )


def test_only_healthy_inbounds_count() -> None:
    engine, index, _ = engine_with_index()
    engine.apply_now(
        [
            event(mesh()),
            event(dataplane("a", inbound("web"))),
            event(dataplane("b", {**inbound("web"), "health": {"ready": False}})),
            event(dataplane("c", {**inbound("web"), "state": "NotReady"})),
            event(dataplane("d", {**inbound("web"), "state": "Ignored"})),
            event(dataplane("e", {**inbound("web"), "health": {"ready": True}})),
        ]
    )
    assert index.entries() == (row("default", 2, {SVC: "web"}),)
    # Health turning false removes the instance; back to ready adds it again.
    engine.apply_now([event(dataplane("a", {**inbound("web"), "health": {"ready": False}}))])
    assert index.entries() == (row("default", 1, {SVC: "web"}),)


def test_several_meshes_and_only_existing_ones() -> None:
    engine, index, _ = engine_with_index()
    engine.apply_now(
        [
            event(mesh("b-mesh")),
            event(dataplane("x", inbound("web"), mesh="b-mesh")),
            event(dataplane("y", inbound("web"), mesh="a-mesh")),
        ]
    )
    # a-mesh does not exist (yet): Kuma lists the Dataplanes of existing meshes only.
    assert index.entries() == (row("b-mesh", 1, {SVC: "web"}),)
    engine.apply_now([event(mesh("a-mesh"))])
    assert index.entries() == (row("a-mesh", 1, {SVC: "web"}), row("b-mesh", 1, {SVC: "web"}))
    engine.apply_now([delete(mesh("b-mesh"))])
    assert index.entries() == (row("a-mesh", 1, {SVC: "web"}),)


def test_deleting_the_last_instance_removes_the_entry() -> None:
    engine, index, calls = engine_with_index()
    engine.apply_now([event(mesh()), event(dataplane("a", inbound("web"), inbound("api")))])
    engine.apply_now([event(dataplane("b", inbound("web")))])
    engine.apply_now([delete(dataplane("a", inbound("web"), inbound("api")))])
    assert index.entries() == (row("default", 1, {SVC: "web"}),)
    engine.apply_now([delete(dataplane("b", inbound("web")))])
    assert index.entries() == ()
    assert len(calls) == 4


def test_a_change_that_keeps_the_tag_sets_changes_nothing() -> None:
    engine, index, calls = engine_with_index()
    engine.apply_now([event(mesh()), event(dataplane("a", inbound("web")))])
    before = index.entries()
    engine.apply_now([event(dataplane("a", inbound("web"), address="10.9.9.9"))])
    assert len(calls) == 1  # the first batch only
    assert index.entries() is before


def test_a_zone_lists_its_tag_and_gateways_list_nothing() -> None:
    engine, index, _ = engine_with_index("zone-1")
    gateway = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "gw",
            "networking": {"address": "10.0.0.2", "gateway": {"tags": {SVC: "edge"}}},
        }
    )
    engine.apply_now([event(mesh()), event(dataplane("a", inbound("web"))), event(gateway)])
    assert index.entries() == (row("default", 1, {SVC: "web", "kuma.io/zone": "zone-1"}),)


def test_external_services_of_this_zone_in_meshes_routing_through_egress() -> None:
    engine, index, _ = engine_with_index("zone-1")
    engine.apply_now(
        [
            event(mesh("plain")),
            event(mesh("routed", egress=True)),
            event(dataplane("a", inbound("web"), mesh="routed")),
            event(external("es-1", "httpbin", "zone-1", mesh="routed")),
            event(external("es-2", "httpbin", "zone-1", mesh="routed")),
            event(external("es-3", "other", "zone-2", mesh="routed")),
            event(external("es-4", "nozone", None, mesh="routed")),
            event(external("es-5", "httpbin", "zone-1", mesh="plain")),
        ]
    )
    zoned = {"kuma.io/zone": "zone-1"}
    assert index.entries() == (
        row("routed", 1, {SVC: "web", **zoned}),
        row("routed", 2, {SVC: "httpbin", **zoned}, True),
    )
    engine.apply_now([event(mesh("plain", egress=True))])
    assert len(index.entries()) == 3


def test_only_the_zones_own_ingresses_are_kept() -> None:
    engine, index, _ = engine_with_index("zone-1")
    engine.apply_now(
        [
            event(ingress("mine", "zone-1")),
            event(ingress("unzoned")),
            event(ingress("theirs", "zone-2")),
        ]
    )
    assert sorted(index.ingresses) == ["mine", "unzoned"]
    engine.apply_now([delete(ingress("mine", "zone-1"))])
    assert sorted(index.ingresses) == ["unzoned"]


def test_incremental_equals_kumas_recompute_over_random_changes() -> None:
    rng = random.Random(12)
    engine, index, _ = engine_with_index()
    meshes: dict[str, Mesh] = {}
    dataplanes: dict[tuple[str, str], Dataplane] = {}
    externals: dict[tuple[str, str], ExternalService] = {}
    for step in range(400):
        batch = []
        for _ in range(rng.randint(1, 5)):
            kind = rng.random()
            mesh_name = rng.choice(["m1", "m2", "m3"])
            if kind < 0.1:
                if mesh_name in meshes and rng.random() < 0.4:
                    batch.append(delete(meshes.pop(mesh_name)))
                else:
                    meshes[mesh_name] = mesh(mesh_name, egress=rng.random() < 0.5)
                    batch.append(event(meshes[mesh_name]))
            elif kind < 0.2:
                name = f"es-{rng.randrange(4)}"
                key = (mesh_name, name)
                if key in externals and rng.random() < 0.4:
                    batch.append(delete(externals.pop(key)))
                else:
                    zone = rng.choice(["", None])
                    externals[key] = external(name, rng.choice(["a", "b"]), zone, mesh_name)
                    batch.append(event(externals[key]))
            else:
                name = f"dp-{rng.randrange(12)}"
                key = (mesh_name, name)
                if key in dataplanes and rng.random() < 0.3:
                    batch.append(delete(dataplanes.pop(key)))
                    continue
                inbounds = []
                for _ in range(rng.randint(0, 3)):
                    item = inbound(rng.choice(["web", "api"]), version=rng.choice(["v1", "v2"]))
                    if rng.random() < 0.2:
                        item["health"] = {"ready": False}
                    inbounds.append(item)
                dataplanes[key] = dataplane(name, *inbounds, mesh=mesh_name)
                batch.append(event(dataplanes[key]))
        engine.apply_now(batch)
        expected = from_scratch(meshes.values(), dataplanes.values(), externals.values(), "")
        assert index.entries() == expected, f"step {step}"
