"""Registration of the Dataplanes sidecars bring (kuma/cp/registration.py): written when the
stream opens, deleted after the delay unless the proxy came back, never touching Dataplanes
that people defined."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import msgspec
import orjson
import pytest
from envoy.config.core.v3.base_pb2 import Node
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from kuma.cp.registration import REGISTRATION_LABEL, Registrar
from kuma.resources import Dataplane, Mesh, ResourceKey, ZoneEgress, ZoneIngress, decode_one
from kuma.resources.model import AvailableService
from kuma.store import NotFoundError, Operation, ResourceEvent, Synced
from kuma.store.memory import MemoryStore
from kuma.xds.generate.types import CLUSTER
from kuma.xds.server import AggregatedDiscoveryServiceStub, InvalidRequest, serve
from tests.xds.fakes import FakeSource

pytestmark = pytest.mark.anyio

DELAY = 0.05
DEADLINE = 5.0
KEY = ResourceKey("Dataplane", "default", "web-01")
WEB: dict[str, Any] = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "web-01",
    "networking": {
        "address": "127.0.0.1",
        "inbound": [{"port": 18080, "servicePort": 8080, "tags": {"kuma.io/service": "web"}}],
    },
}


def node(resource: dict[str, Any] | str | None = WEB, node_id: str = "default.web-01") -> Node:
    built = Node(id=node_id)
    if resource is not None:
        text = resource if isinstance(resource, str) else orjson.dumps(resource).decode()
        built.metadata.update({"dataplane.resource": text})
    return built


@asynccontextmanager
async def registrar(store: MemoryStore, instance: str = "a") -> AsyncIterator[Registrar]:
    component = Registrar(store, DELAY, instance=instance)
    async with anyio.create_task_group() as tg:
        await tg.start(component.run)
        yield component
        tg.cancel_scope.cancel()


async def mesh_store() -> MemoryStore:
    store = MemoryStore()
    await store.create(Mesh(name="default"))
    return store


async def stored(store: MemoryStore) -> Dataplane | None:
    try:
        resource = (await store.get(KEY)).resource
    except NotFoundError:
        return None
    assert isinstance(resource, Dataplane)
    return resource


async def labels(store: MemoryStore) -> dict[str, str]:
    dataplane = await stored(store)
    assert dataplane is not None
    return dataplane.labels


async def eventually_gone(store: MemoryStore) -> None:
    """Wait for the Dataplane's DELETE event (a deadline, not a fixed sleep)."""
    with anyio.fail_after(DEADLINE):
        async with store.watch() as events:
            async for item in events:
                if isinstance(item, ResourceEvent) and item.key == KEY:
                    if item.operation is Operation.DELETE:
                        return
                elif isinstance(item, Synced) and await stored(store) is None:
                    return


async def test_register_then_deregister_after_the_delay() -> None:
    store = await mesh_store()
    async with registrar(store) as component:
        await component.stream_opening(1, "default.web-01", node())
        dataplane = await stored(store)
        assert dataplane is not None
        assert dataplane.labels == {REGISTRATION_LABEL: "a.1"}
        assert dataplane == decode_one(orjson.dumps({**WEB, "labels": dataplane.labels}))
        component.stream_closed(1, "default.web-01")
        await anyio.sleep(DELAY / 2)
        assert await stored(store) is not None  # not before the delay
        await eventually_gone(store)


@pytest.mark.parametrize(
    ("metadata", "node_id", "expected"),
    [
        (
            {**WEB, "networking": {"address": "127.0.0.1"}},
            "default.web-01",
            "networking: has to contain",
        ),
        ("{not json", "default.web-01", "dataplane.resource"),
        (WEB, "default.web-02", "does not name the Dataplane"),
        ({**WEB, "mesh": "nope"}, "nope.web-01", 'mesh "nope" does not exist'),
    ],
)
async def test_invalid_registrations_store_nothing(
    metadata: dict[str, Any] | str, node_id: str, expected: str
) -> None:
    store = await mesh_store()
    async with registrar(store) as component:
        with pytest.raises(InvalidRequest, match=expected):
            await component.stream_opening(1, node_id, node(metadata, node_id))
        component.stream_closed(1, node_id)  # the server calls it only after a success; harmless
    assert (await store.list("Dataplane")).total == 0


async def test_a_stream_without_a_resource_is_not_a_registration() -> None:
    store = await mesh_store()
    await store.create(decode_one(orjson.dumps(WEB)))
    async with registrar(store) as component:
        await component.stream_opening(1, "default.web-01", node(None))
        component.stream_closed(1, "default.web-01")
        await anyio.sleep(DELAY * 4)
    assert await stored(store) is not None


async def test_reconnect_within_the_delay_keeps_it() -> None:
    store = await mesh_store()
    async with registrar(store) as component:
        await component.stream_opening(1, "default.web-01", node())
        component.stream_closed(1, "default.web-01")
        await component.stream_opening(2, "default.web-01", node())
        await anyio.sleep(DELAY * 4)
        assert await stored(store) is not None
        # Overlapping streams: only the last one to close starts the timer.
        await component.stream_opening(3, "default.web-01", node())
        component.stream_closed(2, "default.web-01")
        await anyio.sleep(DELAY * 4)
        assert await stored(store) is not None
        component.stream_closed(3, "default.web-01")
        await eventually_gone(store)


async def test_reconnect_to_another_instance_keeps_it() -> None:
    """Two kuma-cp instances on one store: the proxy left A for B within A's delay."""
    store = await mesh_store()
    async with registrar(store, "a") as first, registrar(store, "b") as second:
        await first.stream_opening(1, "default.web-01", node())
        first.stream_closed(1, "default.web-01")
        await second.stream_opening(7, "default.web-01", node())
        assert await labels(store) == {REGISTRATION_LABEL: "b.1"}
        await anyio.sleep(DELAY * 4)
        assert await stored(store) is not None  # A's delete lost the compare-and-swap
        second.stream_closed(7, "default.web-01")
        await eventually_gone(store)


async def test_a_restarted_instance_takes_its_registrations_back() -> None:
    store = await mesh_store()
    async with registrar(store, "old") as old:
        await old.stream_opening(1, "default.web-01", node())
    # "old" stopped with the stream open: nothing was deleted; "new" sees the label.
    async with registrar(store, "new") as new:
        await new.stream_opening(1, "default.web-01", node())
        assert await labels(store) == {REGISTRATION_LABEL: "new.1"}
        new.stream_closed(1, "default.web-01")
        await eventually_gone(store)


async def test_stopping_drops_pending_deregistrations() -> None:
    store = await mesh_store()
    async with registrar(store) as component:
        await component.stream_opening(1, "default.web-01", node())
        component.stream_closed(1, "default.web-01")
    await anyio.sleep(DELAY * 4)
    assert await stored(store) is not None


async def test_a_dataplane_people_defined_is_never_touched() -> None:
    store = await mesh_store()
    defined = decode_one(
        orjson.dumps({**WEB, "networking": {**WEB["networking"], "address": "10.0.0.9"}})
    )
    version = (await store.create(defined)).meta.version
    async with registrar(store) as component:
        await component.stream_opening(1, "default.web-01", node())
        component.stream_closed(1, "default.web-01")
        await anyio.sleep(DELAY * 4)
    kept = await store.get(KEY)
    assert kept.meta.version == version
    assert kept.resource == defined


async def test_a_registration_edited_since_is_kept() -> None:
    store = await mesh_store()
    async with registrar(store) as component:
        await component.stream_opening(1, "default.web-01", node())
        current = await store.get(KEY)
        await store.update(current.resource, version=current.meta.version)  # someone's edit
        component.stream_closed(1, "default.web-01")
        await anyio.sleep(DELAY * 4)
        assert await stored(store) is not None


async def first_response(stub: AggregatedDiscoveryServiceStub, sent: Node) -> Any:
    async with stub.DeltaAggregatedResources.open() as stream:
        await stream.send_message(DeltaDiscoveryRequest(node=sent, type_url=CLUSTER))
        response = await stream.recv_message()
        await stream.end()
        return response


async def test_an_invalid_registration_ends_the_ads_stream() -> None:
    """Through the real server: INVALID_ARGUMENT with the reason, nothing stored."""
    store = await mesh_store()
    source = FakeSource()
    source.proxy("default.web-01").put(CLUSTER, "a")
    broken = {**WEB, "networking": {"address": "0.0.0.0", "inbound": WEB["networking"]["inbound"]}}
    async with registrar(store) as component, anyio.create_task_group() as tg:
        port: int = await tg.start(partial(serve, source, "127.0.0.1", 0, lifecycle=component))
        with anyio.fail_after(DEADLINE):
            async with Channel("127.0.0.1", port) as channel:
                stub = AggregatedDiscoveryServiceStub(channel)
                with pytest.raises(GRPCError) as caught:
                    await first_response(stub, node(broken))
                assert caught.value.status == Status.INVALID_ARGUMENT
                assert "networking.address: must not be 0.0.0.0 or ::" in str(caught.value.message)
                assert (await store.list("Dataplane")).total == 0
                # A valid one on the same server is registered and served.
                response = await first_response(stub, node())
                assert [r.name for r in response.resources] == ["a"]
                assert await stored(store) is not None
        tg.cancel_scope.cancel()


async def test_a_second_sidecar_cannot_take_a_live_sidecars_dataplane() -> None:
    """Issue 17, defect 7: a newcomer with another Dataplane under a live proxy's name is
    refused, naming the live one; the live registration is untouched and is still deleted
    after its own stream ends; once the live one has gone, the newcomer may register."""
    store = await mesh_store()
    other = {**WEB, "networking": {**WEB["networking"], "address": "10.0.0.9"}}
    async with registrar(store) as component:
        await component.stream_opening(1, "default.web-01", node())
        version = (await store.get(KEY)).meta.version
        with pytest.raises(GRPCError) as caught:
            await component.stream_opening(2, "default.web-01", node(other))
        assert caught.value.status == Status.ALREADY_EXISTS
        message = str(caught.value.message)
        for part in ("web-01", "127.0.0.1", "10.0.0.9"):
            assert part in message
        assert (await store.get(KEY)).meta.version == version
        # The same Dataplane again is a reconnect (the old stream not seen closed yet).
        await component.stream_opening(3, "default.web-01", node())
        component.stream_closed(1, "default.web-01")
        with pytest.raises(GRPCError):
            await component.stream_opening(4, "default.web-01", node(other))
        component.stream_closed(3, "default.web-01")
        # Gone (its streams closed): the newcomer's retry registers.
        await component.stream_opening(5, "default.web-01", node(other))
        dataplane = await stored(store)
        assert dataplane is not None
        assert dataplane.networking is not None
        assert dataplane.networking.address == "10.0.0.9"


async def test_a_sidecar_connected_to_another_instance_keeps_its_dataplane() -> None:
    """Issue 17, defect 7, across instances on one store: instance B refuses a newcomer with
    another Dataplane while the proxy is connected to a live instance A (as B learns from the
    shared insights); once A no longer holds it, the newcomer registers."""
    store = await mesh_store()
    other = {**WEB, "networking": {**WEB["networking"], "address": "10.0.0.9"}}
    holder: list[str | None] = ["a-instance"]

    async def connected_elsewhere(mesh: str, name: str) -> str | None:
        return holder[0] if (mesh, name) == ("default", "web-01") else None

    a = Registrar(store, DELAY, instance="a")
    b = Registrar(store, DELAY, instance="b", connected_elsewhere=connected_elsewhere)
    async with anyio.create_task_group() as tg:
        await tg.start(a.run)
        await tg.start(b.run)
        await a.stream_opening(1, "default.web-01", node())
        with pytest.raises(GRPCError) as caught:
            await b.stream_opening(1, "default.web-01", node(other))
        assert caught.value.status == Status.ALREADY_EXISTS
        assert "a-instance" in str(caught.value.message)
        await b.stream_opening(2, "default.web-01", node())  # the same Dataplane: a reconnect
        b.stream_closed(2, "default.web-01")
        holder[0] = None
        await b.stream_opening(3, "default.web-01", node(other))
        dataplane = await stored(store)
        assert dataplane is not None
        assert dataplane.networking is not None
        assert dataplane.networking.address == "10.0.0.9"
        tg.cancel_scope.cancel()


async def test_a_zone_ingress_registers_with_this_zone_and_keeps_its_services() -> None:
    """``proxyType: ingress``: the ZoneIngress is registered under node id ``.<name>`` with this
    zone set (another zone is refused); a reconnect keeps the availableServices the zone wrote."""
    ingress = {"type": "ZoneIngress", "name": "zi-1",
               "networking": {"address": "10.0.0.9", "port": 10001}}  # fmt: skip
    key = ResourceKey("ZoneIngress", "", "zi-1")

    def ingress_node(resource: dict[str, Any]) -> Node:
        built = node(resource, ".zi-1")
        built.metadata.update({"dataplane.proxyType": "ingress"})
        return built

    store = MemoryStore()
    component = Registrar(store, DELAY, instance="a", zone="zone-1")
    async with anyio.create_task_group() as tg:
        await tg.start(component.run)
        with pytest.raises(InvalidRequest, match="zone: cannot be 'zone-2'"):
            await component.stream_opening(1, ".zi-1", ingress_node({**ingress, "zone": "zone-2"}))
        await component.stream_opening(2, ".zi-1", ingress_node(ingress))
        first = await store.get(key)
        found = first.resource
        assert isinstance(found, ZoneIngress)
        assert found.zone == "zone-1"
        services = (AvailableService(tags={"kuma.io/service": "web"}, instances=1, mesh="m"),)
        with_services = msgspec.structs.replace(found, available_services=services)
        written = await store.update(with_services, version=first.meta.version)
        component.stream_closed(2, ".zi-1")
        await component.stream_opening(3, ".zi-1", ingress_node(ingress))  # a reconnect
        again = (await store.get(key)).resource
        assert isinstance(again, ZoneIngress)
        assert again.available_services == services
        assert (await store.get(key)).meta.version != written.meta.version  # registered again
        tg.cancel_scope.cancel()


async def test_a_zone_egress_registers_with_this_zone_and_is_deregistered() -> None:
    """``proxyType: egress``: the ZoneEgress is registered under node id ``.<name>`` with this
    zone set (another zone is refused) and deleted after the delay once its stream closes."""
    egress = {"type": "ZoneEgress", "name": "ze-1",
              "networking": {"address": "10.0.0.9", "port": 10002}}  # fmt: skip
    key = ResourceKey("ZoneEgress", "", "ze-1")

    def egress_node(resource: dict[str, Any]) -> Node:
        built = node(resource, ".ze-1")
        built.metadata.update({"dataplane.proxyType": "egress"})
        return built

    store = MemoryStore()
    component = Registrar(store, DELAY, instance="a", zone="zone-1")
    async with anyio.create_task_group() as tg:
        await tg.start(component.run)
        with pytest.raises(InvalidRequest, match="zone: cannot be 'zone-2'"):
            await component.stream_opening(1, ".ze-1", egress_node({**egress, "zone": "zone-2"}))
        with pytest.raises(InvalidRequest, match="the ZoneEgress in node metadata is not valid"):
            await component.stream_opening(1, ".ze-1", egress_node({**egress, "networking": {}}))
        await component.stream_opening(2, ".ze-1", egress_node(egress))
        found = (await store.get(key)).resource
        assert isinstance(found, ZoneEgress)
        assert found.zone == "zone-1"
        component.stream_closed(2, ".ze-1")
        with anyio.fail_after(DEADLINE):
            while True:
                try:
                    await store.get(key)
                except NotFoundError:
                    break
                await anyio.sleep(DELAY)
        tg.cancel_scope.cancel()
