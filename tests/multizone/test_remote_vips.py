"""VIPs and ``.mesh`` names for services only another zone has (kuma/cp/vips.py,
kuma/xds/engine/handlers/remote_services.py): Kuma's VIP allocator takes other zones'
ZoneIngress ``availableServices``, so a transparent proxy in zone-1 reaches a service that
only zone-2 runs, through zone-2's ingress."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kuma.cp.vips import VipAllocator, hashed_vip
from kuma.multizone import stamp_zone
from kuma.resources import Dataplane, MeshVips, ResourceKey, ResourceMeta
from kuma.store import Operation, ResourceEvent, open_store
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.engine.handlers import default_handlers
from kuma.xds.engine.watches import Subscription
from kuma.xds.generate.cross_zone import listed_services, remote_endpoints
from kuma.xds.generate.proxy import generate_proxy
from kuma.xds.generate.view import StaticMeshView
from kuma.xds.proxy_metadata import ProxyMetadata
from tests.cp.test_vips import dataplane as plain_dataplane
from tests.cp.test_vips import has, running, stored_vips, wait_for
from tests.multizone.test_cross_zone import cla_of, groups, ingress, mesh, put
from tests.xds.test_engine_vips import _dns_names
from tests.xds.test_engine_vips import dataplane as vip_dataplane

_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def test_listed_services_are_a_remote_ingress_s_own_mesh_service_pairs() -> None:
    zone_2 = ingress("zi-2", "zone-2", {"backend": 2, "db": 1}, address=None)
    # With or without a public address (Kuma's allocator does not look at it).
    assert listed_services(zone_2, "zone-1") == {("default", "backend"), ("default", "db")}
    assert listed_services(zone_2, "zone-2") == frozenset()  # the zone's own ingress
    assert listed_services(ingress("zi-x", "", {"backend": 1}), "zone-1") == frozenset()
    other = ingress("zi-3", "zone-3", {"pay": 1}, mesh="other")
    assert listed_services(other, "zone-1") == {("other", "pay")}


# --- the allocator ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_allocator_gives_other_zones_services_a_vip_and_releases_it() -> None:
    async with open_store("memory", {}) as store:
        await store.create(plain_dataplane("web-1", "web"))
        # The zone's own ingress lists what its Dataplanes already make exist: nothing new.
        await store.create(ingress("zi-1", "zone-1", {"local-only": 1}))
        await store.create(ingress("zi-2", "zone-2", {"backend": 2}, address=None))
        await store.create(ingress("zi-3", "zone-3", {"backend": 1, "pay": 1}))
        await store.create(ingress("zi-4", "zone-3", {"pay": 1}, mesh="other"))
        async with running(VipAllocator(store, zone="zone-1")):
            found = await wait_for(store, has("web", "backend", "pay"))
            assert found is not None
            assert found["backend"] == hashed_vip("default", "backend")
            assert await stored_vips(store, "other") == {"pay": hashed_vip("other", "pay")}
            # zone-3 stops listing backend: zone-2 still lists it, pay goes.
            current = await store.get(ResourceKey("ZoneIngress", "", "zi-3"))
            await store.update(
                ingress("zi-3", "zone-3", {"backend": 1}), version=current.meta.version
            )
            assert await wait_for(store, has("web", "backend")) == {
                s: found[s] for s in ("web", "backend")
            }
            await store.delete(ResourceKey("ZoneIngress", "", "zi-2"))
            await store.delete(ResourceKey("ZoneIngress", "", "zi-3"))
            assert await wait_for(store, has("web")) == {"web": found["web"]}


def test_an_ingress_change_reevaluates_only_the_services_it_names() -> None:
    """Only a service appearing or vanishing dirties a mesh; an instances change (the common
    update of availableServices) costs no allocation at all."""
    allocator = VipAllocator(None, zone="zone-1")  # type: ignore[arg-type]  # never run

    def apply(resource: Any, operation: Operation = Operation.UPDATE) -> set[str]:
        allocator._dirty.clear()
        allocator._apply(ResourceEvent(operation, resource, _META, 1))
        return set(allocator._dirty)

    assert apply(ingress("zi-2", "zone-2", {"backend": 2}), Operation.CREATE) == {"default"}
    assert apply(ingress("zi-2", "zone-2", {"backend": 7})) == set()
    assert apply(ingress("zi-3", "zone-3", {"backend": 1})) == set()  # listed already
    assert apply(ingress("zi-4", "zone-3", {"pay": 1}, mesh="other")) == {"other"}
    assert apply(ingress("zi-2", "zone-2", {}), Operation.DELETE) == set()  # zi-3 lists it
    assert allocator.services("default") == {"backend"}
    assert apply(ingress("zi-3", "zone-3", {}), Operation.DELETE) == {"default"}
    assert allocator.services("default") == set()
    assert allocator.services("other") == {"pay"}


# --- the engine ---------------------------------------------------------------------------------


def transparent_web() -> Dataplane:
    # As a zone serves it (kuma/multizone/zone_tag.py), for the from-scratch comparison.
    return stamp_zone(vip_dataplane("web-1", "web", transparent=True), "zone-1", strict=False)


def vip_listeners(subscription: Subscription) -> set[str]:
    return {n for n in subscription.resources(types.LISTENER) if n.startswith("outbound:2")}


def test_a_zone_1_transparent_proxy_reaches_a_zone_2_only_service() -> None:
    web = transparent_web()
    vips = MeshVips(
        name="default",
        vips={"web": "240.0.0.1", "backend": "240.0.0.2", "local-only": "240.0.0.3"},
    )
    zone_2 = ingress("zi-2", "zone-2", {"backend": 3})
    own = ingress("zi-1", "zone-1", {"local-only": 1}, address="192.0.2.1")
    engine = Engine(handlers=default_handlers(zone="zone-1"))
    engine.apply_now(put(mesh(), web, vips, own))
    tp = engine.subscribe("default.web-1", ProxyMetadata(dns_port=15053))
    # Before zone-2's ingress arrives backend exists nowhere here: no VIP, no name.
    assert vip_listeners(tp) == {"outbound:240.0.0.1:80"}
    assert _dns_names(tp) == {"web.mesh"}
    tp.take_changes()

    engine.apply_now(put(zone_2))
    changes = tp.take_changes()
    assert "outbound:240.0.0.2:80" in changes[types.LISTENER]
    assert vip_listeners(tp) == {"outbound:240.0.0.1:80", "outbound:240.0.0.2:80"}
    assert _dns_names(tp) == {"web.mesh", "backend.mesh"}
    # The outbound leads to zone-2's ingress.
    assert groups(cla_of(tp.resources(types.ENDPOINT), "backend")) == [
        ("zone-2", 0, [("192.0.2.2", 10001, 3)])
    ]
    # The same as a from-scratch build of the same inputs.
    view = StaticMeshView(
        [web],
        mesh(),
        vips.vips,
        remote=remote_endpoints([zone_2, own], "zone-1"),
        local_zone="zone-1",
        remote_services={s for _, s in listed_services(zone_2, "zone-1")},
    )
    scratch = generate_proxy(web, view, 9901, dns_port=15053)
    for type_url in (types.LISTENER, types.CLUSTER):
        served = tp.resources(type_url)
        assert set(served) == set(scratch[type_url]), type_url
        for name, message in scratch[type_url].items():
            assert served[name].body == message.SerializeToString(deterministic=True), name

    # Instances change in zone-2: only backend's endpoints travel, nothing is re-assembled.
    stats = engine.apply_now(put(ingress("zi-2", "zone-2", {"backend": 5})))
    assert stats.proxies_assembled == 0
    assert tp.take_changes() == {types.ENDPOINT: {"backend"}}

    # zone-2 stops listing backend: its VIP outbound and its name go.
    engine.apply_now(put(zone_2, operation=Operation.DELETE))
    assert vip_listeners(tp) == {"outbound:240.0.0.1:80"}
    assert _dns_names(tp) == {"web.mesh"}
    engine.unsubscribe(tp)


@pytest.mark.anyio
async def test_allocator_and_engine_agree_through_a_store() -> None:
    """The allocator's write and the engine's view of the same store: zone-2's service gets
    its VIP outbound in zone-1 with no Dataplane of it anywhere in zone-1."""
    async with open_store("memory", {}) as store:
        for resource in (mesh(), transparent_web(), ingress("zi-2", "zone-2", {"backend": 1})):
            await store.create(resource)
        async with running(VipAllocator(store, zone="zone-1")):
            found = await wait_for(store, has("web", "backend"))
        assert found is not None
        engine = Engine(handlers=default_handlers(zone="zone-1"))
        events = []
        for kind in ("Mesh", "Dataplane", "ZoneIngress", "MeshVips"):
            for stored in (await store.list(kind)).items:
                events.append(ResourceEvent(Operation.CREATE, stored.resource, stored.meta, 1))
        engine.apply_now(events)
        tp = engine.subscribe("default.web-1")
        assert f"outbound:{found['backend']}:80" in vip_listeners(tp)
        engine.unsubscribe(tp)
