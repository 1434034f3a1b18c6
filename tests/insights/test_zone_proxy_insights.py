"""Zone proxies' insights (node id ``.<name>``, mesh ``""``): kept after their streams close
while their ZoneIngress or ZoneEgress exists (``inspect zoneingresses`` then shows them Offline
with their last connection), deleted with it."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import pytest

from kuma.insights import Insights, MemoryInsightStore, dataplane_exists
from kuma.resources import ResourceKey, ResourceMeta, ZoneIngress, decode_one
from kuma.store import Operation, ResourceEvent
from kuma.store.memory import MemoryStore

from .clocks import FakeClock

pytestmark = pytest.mark.anyio

INGRESS = decode_one(
    "type: ZoneIngress\nname: ingress-1\nnetworking:\n  address: 10.0.0.1\n  port: 10001\n"
    "  advertisedAddress: 192.0.2.1\n  advertisedPort: 10001\n"
)
EGRESS = decode_one(
    "type: ZoneEgress\nname: egress-1\nnetworking:\n  address: 10.0.0.2\n  port: 10002\n"
)
_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


async def test_a_zone_proxy_exists_by_its_zone_ingress_or_egress() -> None:
    store = MemoryStore()
    await store.create(INGRESS)
    await store.create(EGRESS)
    assert await dataplane_exists(store, "", "ingress-1")
    assert await dataplane_exists(store, "", "egress-1")
    assert not await dataplane_exists(store, "", "ghost")
    # A Dataplane's name is not a zone proxy's.
    assert not await dataplane_exists(store, "default", "ingress-1")


async def test_a_zone_proxys_insight_follows_its_resource() -> None:
    store = MemoryStore()
    await store.create(INGRESS)
    clock = FakeClock()
    service = Insights(
        MemoryInsightStore(clock=clock),
        flush_interval=10,
        instance_id="cp-1",
        wall_clock=clock,
        dataplane_exists=partial(dataplane_exists, store),
    )
    service.tracker.on_stream_open(1, ".ingress-1", "delta", "")
    service.tracker.on_stream_close(1, ".ingress-1")
    await service.flusher.flush_due()
    await service.prune()
    kept = service.insight("", "ingress-1")
    assert kept is not None
    assert kept["subscriptions"][0]["disconnectTime"]
    stored = await store.get(ResourceKey(ZoneIngress.TYPE, "", "ingress-1"))
    await store.delete(stored.key)
    service.on_store_event(ResourceEvent(Operation.DELETE, stored.resource, _META, 3))
    await service.prune()
    assert service.insight("", "ingress-1") is None
