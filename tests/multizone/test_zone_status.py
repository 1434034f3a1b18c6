"""Global's record of its zones (kuma/kds/zone_status.py) over in-memory KDS streams: the Zone
created once on first connect, a disabled zone refused, the subscription's connect and
disconnect times, the zone's reported version and store, per-type counters, and the sweep that
closes the subscriptions of a global instance that stopped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

import kuma
from kuma.kds import mapping, receiver, sender
from kuma.kds.auth import ZoneAuthenticator
from kuma.kds.client import ZoneClient, global_sink, parse_address
from kuma.kds.outbox import Outbox
from kuma.kds.server import KdsServer
from kuma.kds.zone_status import ZoneDisabled, ZoneStatus, compatible_versions
from kuma.resources import Mesh, ResourceKey, Zone, ZoneInsight
from kuma.resources.zone_insight import KdsSubscription
from kuma.store import NotFoundError
from kuma.store.memory import MemoryStore
from kuma.tokens.live import LiveGrants

from .test_kds_resume import pipes, until

pytestmark = pytest.mark.anyio


async def insight_of(store: MemoryStore, zone: str) -> ZoneInsight | None:
    try:
        found = (await store.get(ResourceKey(ZoneInsight.TYPE, "", zone))).resource
    except NotFoundError:
        return None
    assert isinstance(found, ZoneInsight)
    return found


async def test_the_zone_is_created_once_by_racing_global_instances() -> None:
    store = MemoryStore()
    instances = [ZoneStatus(store, f"global-{i}") for i in range(4)]
    async with anyio.create_task_group() as tg:
        for status in instances:
            tg.start_soon(status.admit, "zone-1")
    page = await store.list(Zone.TYPE)
    assert [item.resource for item in page.items] == [Zone(name="zone-1", enabled=True)]
    first = page.items[0].meta.version
    await instances[0].admit("zone-1")  # a reconnect writes nothing
    assert (await store.get(ResourceKey(Zone.TYPE, "", "zone-1"))).meta.version == first


async def test_a_disabled_zone_is_refused_before_anything_travels() -> None:
    store = MemoryStore()
    await store.create(Zone(name="zone-1", enabled=False))
    status = ZoneStatus(store, "global-1")
    with pytest.raises(ZoneDisabled, match="zone zone-1 is disabled"):
        await status.admit("zone-1")

    class Stream:
        metadata = {"client-id": "zone-1"}

        async def recv_message(self) -> Any:
            raise AssertionError("a refused stream is never read")

    server = KdsServer(
        store, Outbox(store, mapping.to_zone), ZoneAuthenticator(None, LiveGrants()), status
    )
    with pytest.raises(GRPCError) as refused:
        await server.GlobalToZoneSync(Stream())  # type: ignore[arg-type]
    assert refused.value.status is Status.PERMISSION_DENIED
    assert await insight_of(store, "zone-1") is None


async def test_a_subscription_records_version_counters_and_disconnect() -> None:
    glob, zone = MemoryStore(), MemoryStore()
    await glob.create(Mesh(name="default"))
    await glob.create(Mesh(name="other"))
    status = ZoneStatus(glob, "global-1", flush_interval=0.01)
    await status.admit("zone-1")
    client = ZoneClient(
        zone, "zone-1", parse_address("grpcs://g:5685"), "", None, instance_id="z-7"
    )
    outbox = Outbox(glob, mapping.to_zone)
    global_end, zone_end = pipes()
    async with anyio.create_task_group() as tg:
        tg.start_soon(outbox.run)

        async def serve() -> None:
            async with status.subscription("zone-1") as tracker:
                await sender.offer(
                    global_end, outbox, mapping.global_kinds(), "zone-1", observer=tracker
                )

        tg.start_soon(serve)
        sink = global_sink(zone)
        kinds = mapping.global_kinds()
        zone_scope = anyio.CancelScope()

        async def follow() -> None:
            with zone_scope:
                await receiver.take(zone_end, sink, kinds, "global", node=client.node())

        tg.start_soon(follow)

        async def acked_meshes() -> bool:
            insight = await insight_of(glob, "zone-1")
            if insight is None or not insight.subscriptions:
                return False
            stat = insight.subscriptions[-1].status.stat.get("Mesh")
            return stat is not None and stat.responses_acknowledged >= 1

        await until(glob, acked_meshes)
        insight = await insight_of(glob, "zone-1")
        assert insight is not None
        assert insight.online
        (live,) = insight.subscriptions
        assert live.global_instance_id == "global-1"
        assert live.zone_instance_id == "z-7"
        assert live.version is not None
        assert live.version.kuma_cp is not None
        assert live.version.kuma_cp.version == kuma.__version__
        assert live.version.kuma_cp.kuma_cp_global_compatible
        assert live.config == '{"store": {"type": "memory"}}'
        assert live.status.total.responses_sent >= live.status.stat["Mesh"].responses_sent >= 1
        assert live.status.total.responses_rejected == 0
        assert live.status.last_update_time is not None
        # The zone goes away: its stream ends, the subscription is closed.
        zone_scope.cancel()
        zone_end.close()

        async def offline() -> bool:
            found = await insight_of(glob, "zone-1")
            return found is not None and not found.online

        await until(glob, offline)
        tg.cancel_scope.cancel()
    global_end.close()
    insight = await insight_of(glob, "zone-1")
    assert insight is not None
    assert insight.subscriptions[0].disconnect_time is not None


async def test_the_sweep_closes_subscriptions_of_stopped_instances() -> None:
    store = MemoryStore()
    then = datetime(2026, 12, 4, tzinfo=UTC)
    await store.create(
        ZoneInsight(
            name="zone-1",
            subscriptions=(
                KdsSubscription(id="a", global_instance_id="crashed", connect_time=then),
                KdsSubscription(id="b", global_instance_id="peer", connect_time=then),
                KdsSubscription(id="c", global_instance_id="me", connect_time=then),
            ),
        )
    )

    async def live() -> frozenset[str]:
        return frozenset({"peer"})

    await store.create(Zone(name="zone-1"))
    await store.create(ZoneInsight(name="deleted-zone"))
    await ZoneStatus(store, "me", live=live).sweep()
    assert await insight_of(store, "deleted-zone") is None
    insight = await insight_of(store, "zone-1")
    assert insight is not None
    assert [s.online for s in insight.subscriptions] == [False, True, True]
    assert insight.online


async def test_a_deleted_zone_loses_its_insight_and_its_streams() -> None:
    store = MemoryStore()
    status = ZoneStatus(store, "global-1")
    async with anyio.create_task_group() as tg:
        await tg.start(status.run)
        ending = await status.admit("zone-1")
        ended: list[str] = []
        closed = anyio.Event()

        async def stream() -> None:
            async with status.subscription("zone-1"):
                ended.append(await ending.wait())
            closed.set()

        tg.start_soon(stream)

        async def connected() -> bool:
            return await insight_of(store, "zone-1") is not None

        await until(store, connected)
        await store.delete(ResourceKey(Zone.TYPE, "", "zone-1"))

        with anyio.fail_after(5):
            await closed.wait()

        async def forgotten() -> bool:
            return await insight_of(store, "zone-1") is None

        await until(store, forgotten)
        tg.cancel_scope.cancel()
    assert ended == ["deleted"]
    # The stream's closing write did not bring the insight back without its Zone.
    assert await insight_of(store, "zone-1") is None


class GatedStore(MemoryStore):
    """Holds ZoneInsight updates while ``gate`` is set and closed."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: anyio.Event | None = None
        self.held = anyio.Event()

    async def update(self, resource: Any, *, version: str) -> Any:
        if self.gate is not None and isinstance(resource, ZoneInsight):
            self.held.set()
            await self.gate.wait()
        return await super().update(resource, version=version)


async def test_a_stream_cancelled_while_closing_is_still_closed() -> None:
    # grpclib cancels a handler's task natively (task.cancel()) when the connection is lost,
    # possibly while the handler is writing its disconnect.
    store = GatedStore()
    status = ZoneStatus(store, "global-1")
    await status.admit("zone-1")
    leave = anyio.Event()

    async def stream() -> None:
        async with status.subscription("zone-1"):
            await leave.wait()

    task = asyncio.ensure_future(stream())

    async def online() -> bool:
        found = await insight_of(store, "zone-1")
        return found is not None and found.online

    await until(store, online)
    store.gate = anyio.Event()
    leave.set()
    with anyio.fail_after(5):
        await store.held.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store.gate.set()

    async def offline() -> bool:
        found = await insight_of(store, "zone-1")
        return found is not None and not found.online

    await until(store, offline)


async def test_unreadable_version_metadata_is_left_out() -> None:
    store = MemoryStore()
    status = ZoneStatus(store, "global-1")
    await status.admit("zone-1")
    client = ZoneClient(store, "zone-1", parse_address("grpcs://g:5685"), "", None)
    node = client.node()
    node.metadata.fields["version"].struct_value.update({"kumaCp": "not a struct"})
    async with status.subscription("zone-1") as tracker:
        tracker.on_request(DeltaDiscoveryRequest(node=node))
        first = tracker.snapshot()
        assert first.version is None
        assert first.config == '{"store": {"type": "memory"}}'
        assert tracker.snapshot().generation == first.generation + 1


def test_version_compatibility_is_kumas() -> None:
    assert compatible_versions("2.7.0", "2.5.3")
    assert not compatible_versions("2.7.0", "2.4.0")
    assert not compatible_versions("2.7.0", "1.7.0")
    assert compatible_versions("0.1.0", "dev")


async def test_a_zone_disabled_while_connected_is_cut_off() -> None:
    store = MemoryStore()
    status = ZoneStatus(store, "global-1")
    server = KdsServer(
        store, Outbox(store, mapping.to_zone), ZoneAuthenticator(None, LiveGrants()), status
    )

    class Stream:
        metadata = {"client-id": "zone-1"}

        async def recv_message(self) -> Any:
            await anyio.sleep_forever()

        async def send_message(self, message: Any) -> None:
            pass

    ended: list[GRPCError] = []
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        await tg.start(status.run)

        async def serve() -> None:
            try:
                await server.GlobalToZoneSync(Stream())  # type: ignore[arg-type]
            except GRPCError as error:
                ended.append(error)
            done.set()

        tg.start_soon(serve)

        async def connected() -> bool:
            found = await insight_of(store, "zone-1")
            return found is not None and found.online

        await until(store, connected)
        zone = await store.get(ResourceKey(Zone.TYPE, "", "zone-1"))
        await store.update(Zone(name="zone-1", enabled=False), version=zone.meta.version)

        with anyio.fail_after(5):
            await done.wait()
        tg.cancel_scope.cancel()
    insight = await insight_of(store, "zone-1")
    assert insight is not None
    assert not insight.online
    assert [e.status for e in ended] == [Status.PERMISSION_DENIED]
    assert ended[0].message == "zone zone-1 is disabled (its Zone has enabled: false)"
