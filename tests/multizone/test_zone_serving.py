"""A zone control plane's Dataplanes carry ``kuma.io/zone`` where they are registered (kuma-dp's
stream) and in the configuration other proxies are served (endpoint metadata and locality)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import msgspec
import pytest
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment

from kuma.cp.registration import REGISTRATION_LABEL, Registrar
from kuma.resources import Dataplane, ResourceKey
from kuma.store.memory import MemoryStore
from kuma.xds.engine import Engine
from kuma.xds.engine.handlers import default_handlers
from kuma.xds.generate import types
from kuma.xds.server import InvalidRequest
from tests.cp.test_registration import KEY, WEB, mesh_store, node
from tests.xds.test_engine import dataplane, put

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def zone_registrar(store: MemoryStore, zone: str = "zone-1") -> AsyncIterator[Registrar]:
    component = Registrar(store, 0.05, instance="a", zone=zone)
    async with anyio.create_task_group() as tg:
        await tg.start(component.run)
        yield component
        tg.cancel_scope.cancel()


async def test_a_registered_dataplane_carries_the_zone() -> None:
    store = await mesh_store()
    async with zone_registrar(store) as component:
        await component.stream_opening(1, "default.web-01", node())
        stored = (await store.get(KEY)).resource
        assert isinstance(stored, Dataplane)
        assert stored.networking is not None
        assert stored.networking.inbound[0].tags == {
            "kuma.io/service": "web",
            "kuma.io/zone": "zone-1",
        }
        # The same proxy on a second stream (a reconnect seen before the old stream closed) is
        # the same Dataplane: accepted, not taken for a newcomer.
        await component.stream_opening(2, "default.web-01", node())
        again = (await store.get(KEY)).resource
        assert again.labels == {REGISTRATION_LABEL: "a.2"}


async def test_a_registration_naming_another_zone_is_refused() -> None:
    store = await mesh_store()
    forged = {
        **WEB,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {
                    "port": 18080,
                    "servicePort": 8080,
                    "tags": {"kuma.io/service": "web", "kuma.io/zone": "zone-2"},
                }
            ],
        },
    }
    async with zone_registrar(store) as component:
        with pytest.raises(InvalidRequest, match=r'tags\["kuma.io/zone"\]: cannot be \'zone-2\''):
            await component.stream_opening(1, "default.web-01", node(forged))
    assert (await store.list("Dataplane")).total == 0


async def test_standalone_registration_is_unchanged() -> None:
    store = await mesh_store()
    async with zone_registrar(store, zone="") as component:
        await component.stream_opening(1, "default.web-01", node())
        stored = (await store.get(ResourceKey("Dataplane", "default", "web-01"))).resource
        assert isinstance(stored, Dataplane)
        assert stored.networking is not None
        assert stored.networking.inbound[0].tags == {"kuma.io/service": "web"}


def served_endpoints(engine: Engine, backend: Dataplane | None = None) -> ClusterLoadAssignment:
    engine.apply_now(
        put(
            backend or dataplane("backend-1", "backend"),
            dataplane("web-1", "web", outbounds=("backend",)),
        )
    )
    sub = engine.subscribe("default.web-1")
    assert sub.known
    assignment = ClusterLoadAssignment()
    assignment.ParseFromString(sub.resources(types.ENDPOINT)["backend"].body)
    return assignment


def test_served_endpoints_carry_the_zone_as_tag_and_locality() -> None:
    assignment = served_endpoints(Engine(handlers=default_handlers(zone="zone-1")))
    [group] = assignment.endpoints
    assert group.locality.zone == "zone-1"
    [endpoint] = group.lb_endpoints
    lb = endpoint.metadata.filter_metadata["envoy.lb"].fields
    assert lb["kuma.io/zone"].string_value == "zone-1"


def test_standalone_serves_no_zone() -> None:
    assignment = served_endpoints(Engine())
    [group] = assignment.endpoints
    assert group.locality.zone == ""
    [endpoint] = group.lb_endpoints
    assert "kuma.io/zone" not in endpoint.metadata.filter_metadata["envoy.lb"].fields


def test_a_zone_written_straight_into_the_store_is_served_as_this_zone() -> None:
    """A Dataplane that bypassed the API and registration (a file, an etcd key) naming another
    zone is served with this zone's tag: the tag cannot be forged into other proxies' config."""
    plain = dataplane("backend-1", "backend")
    assert plain.networking is not None
    inbound = plain.networking.inbound[0]
    forged_inbound = msgspec.structs.replace(
        inbound, tags={**inbound.tags, "kuma.io/zone": "zone-2"}
    )
    forged = msgspec.structs.replace(
        plain, networking=msgspec.structs.replace(plain.networking, inbound=(forged_inbound,))
    )
    assignment = served_endpoints(Engine(handlers=default_handlers(zone="zone-1")), forged)
    [group] = assignment.endpoints
    assert group.locality.zone == "zone-1"
    lb = group.lb_endpoints[0].metadata.filter_metadata["envoy.lb"].fields
    assert lb["kuma.io/zone"].string_value == "zone-1"
