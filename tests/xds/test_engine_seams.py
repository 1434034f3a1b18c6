"""The engine's seams: input handlers by resource type, the proxy index, shared-resource keys."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from kuma.resources import Dataplane, Mesh, ResourceMeta, ZoneIngress, from_document
from kuma.resources.policy import POLICY_KINDS
from kuma.store import Operation, ResourceEvent
from kuma.xds.engine import Engine
from kuma.xds.engine.handlers import HandlerRegistry, default_handlers
from kuma.xds.engine.invalidation import Invalidation
from kuma.xds.engine.mesh_state import Meshes
from kuma.xds.engine.proxy_index import ProxyIndex
from kuma.xds.engine.watches import ProxyRecord, Subscription

from .test_engine import dataplane

_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def in_mesh(resource: Dataplane, mesh: str) -> Dataplane:
    return msgspec.structs.replace(resource, mesh=mesh)


def mesh(name: str, *, passthrough: bool = True) -> Mesh:
    resource = from_document(
        {"type": "Mesh", "name": name, "networking": {"outbound": {"passthrough": passthrough}}}
    )
    assert isinstance(resource, Mesh)
    return resource


def event(resource: Dataplane | Mesh | ZoneIngress) -> ResourceEvent:
    return ResourceEvent(Operation.CREATE, resource, _META, 1)


def test_a_mesh_change_touches_only_that_meshs_proxies() -> None:
    """10 meshes x 1,000 connected proxies: a Mesh change re-assembles exactly the 1,000 of its
    mesh, found through the index (no other proxy is visited or notified)."""
    meshes, per_mesh = 10, 1_000
    engine = Engine()
    engine.apply_now([event(mesh(f"m{i}")) for i in range(meshes)])
    engine.apply_now(
        [
            event(in_mesh(dataplane(f"dp-{j}", f"svc-{j % 20}", outbounds=("svc-0",)), f"m{i}"))
            for i in range(meshes)
            for j in range(per_mesh)
        ]
    )
    subscriptions: dict[str, Subscription] = {}
    for i in range(meshes):
        for j in range(per_mesh):
            node = f"m{i}.dp-{j}"
            subscriptions[node] = engine.subscribe(node)
            subscriptions[node].take_changes()
    assert len(engine.proxies) == meshes * per_mesh

    stats = engine.apply_now([event(mesh("m3", passthrough=False))])

    assert stats.proxies_assembled == per_mesh
    # Passthrough shapes only transparent proxies' config: nobody here hears of a change.
    assert stats.proxies_notified == 0
    assert not any(s.take_changes() for s in subscriptions.values())


class ZoneIngressToMesh:
    """A handler of a kind the engine does not know: every ZoneIngress event re-assembles the
    proxies of the mesh ``default`` (a stand-in for a real multi-zone handler)."""

    resource_type = ZoneIngress.TYPE

    def __init__(self) -> None:
        self.seen: list[str] = []

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        self.seen.append(event.resource.name)
        invalidation.meshes.add("default")


def test_a_new_resource_kind_plugs_in_as_a_handler() -> None:
    handler = ZoneIngressToMesh()
    engine = Engine(handlers=[*default_handlers(), handler])
    engine.apply_now([event(dataplane("web-1", "web")), event(dataplane("web-2", "web"))])
    engine.subscribe("default.web-1")
    ingress = from_document({"type": "ZoneIngress", "name": "zi-1", "zone": "east"})
    assert isinstance(ingress, ZoneIngress)

    stats = engine.apply_now([event(ingress)])

    assert handler.seen == ["zi-1"]
    assert stats.proxies_assembled == 1  # the connected proxy of the mesh; web-2 is offline


def test_a_kind_without_a_connected_proxy_costs_nothing_and_one_handler_per_class() -> None:
    engine = Engine()
    ingress = from_document({"type": "ZoneIngress", "name": "zi-1", "zone": "east"})
    assert isinstance(ingress, ZoneIngress)
    assert engine.apply_now([event(ingress)]).proxies_assembled == 0
    registry = HandlerRegistry(default_handlers())
    # The engine inputs, plus one handler per registered policy kind.
    core = {"Dataplane", "Mesh", "MeshVips", "ExternalService", "Secret", "MeshGateway"}
    core |= {"ZoneIngress", "ZoneEgress"}
    assert registry.resource_types == {*core, *POLICY_KINDS}
    with pytest.raises(ValueError, match="DataplaneHandler for Dataplane is already registered"):
        registry.register(default_handlers()[0])


def test_the_proxy_index_answers_by_mesh_consumed_service_dataplane_and_selection() -> None:
    index = ProxyIndex()
    a, b, c = (ProxyRecord(f"{m}.{n}", m, n) for m, n in (("m1", "a"), ("m1", "b"), ("m2", "c")))
    for record in (a, b, c):
        index.add(record)
    index.set_consumed(a, {"db", "cache"})
    index.set_consumed(b, {"db"})
    index.set_selections(a, {("MeshTimeout", "m1", "t1")})
    index.set_selections(c, {("MeshTimeout", "m2", "t2")})

    assert {r.node_id for r in index.in_mesh("m1")} == {"m1.a", "m1.b"}
    assert index.consumers("m1", "db") == {"m1.a", "m1.b"}
    assert index.consumers("m2", "db") == set()
    assert index.of_dataplane("m2", "c") is c
    assert index.selected_by(("MeshTimeout", "m1", "t1")) == {"m1.a"}

    index.set_consumed(a, {"cache"})
    index.set_selections(a, ())
    assert index.consumers("m1", "db") == {"m1.b"}
    assert index.selected_by(("MeshTimeout", "m1", "t1")) == set()

    index.remove(b)
    index.remove(a)
    assert index.in_mesh("m1") == ()
    assert index.consumer_entries == 0
    assert len(index) == 1


def test_the_change_notice_carries_when_its_oldest_input_arrived() -> None:
    engine = Engine()
    engine.apply_now(
        [
            event(dataplane("web-1", "web", outbounds=("backend",))),
            event(dataplane("b-1", "backend")),
        ]
    )
    watch = engine.subscribe("default.web-1")
    assert watch.take_changes().since is None  # the first config: no input behind it
    engine.apply_now([event(dataplane("b-1", "backend", address="10.0.0.2"))], received_at=10.0)
    engine.apply_now([event(dataplane("b-1", "backend", address="10.0.0.3"))], received_at=20.0)
    changes = watch.take_changes()
    assert changes
    assert changes.since == 10.0
    assert watch.take_changes().since is None


def test_a_proxy_becoming_known_wakes_its_watch_without_a_resource_change() -> None:
    engine = Engine()
    watch = engine.subscribe("default.web-1")
    assert (watch.known, watch.has_changes) == (False, False)
    engine.apply_now([event(dataplane("web-1", "web"))])
    assert (watch.known, watch.has_changes) == (True, True)
    watch.take_changes()
    assert (watch.known, watch.has_changes) == (True, False)
