"""A zone's insights go up to global (kuma/kds/insight_sync.py) over in-memory KDS streams:
1,000 Dataplanes' insights and a zone proxy's arrive under global's names and read Online on
global; a change sends that insight alone; a deletion removes it; a zone Dataplane deleted on
global takes its insight along; a zone cannot name another zone's proxy. The bytes sent for
1,000 insights are printed (recorded in benchmarks/RESULTS.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import msgspec
import pytest

from kuma.insights import (
    DataplaneInsight,
    DiscoverySubscription,
    Insights,
    MemoryInsightStore,
    is_online,
)
from kuma.insights.model import DiscoveryServiceStats, SubscriptionStatus
from kuma.kds import mapping, receiver, sender
from kuma.kds.insight_sync import INSIGHT_URL, UP_URLS, InsightFeed, InsightSink, encode
from kuma.kds.outbox import Outbox
from kuma.kds.server import zone_sink
from kuma.resources import Dataplane, ResourceKey, from_document
from kuma.store import Operation, ResourceEvent
from kuma.store.memory import MemoryStore
from tests.fixtures.polling import until

from .test_kds_resume import MemoryPipe, pipes

pytestmark = pytest.mark.anyio

ZONE = "zone-1"
COUNT = 1000
ENVOY = {
    "kumaDp": {"version": "2.7.29", "gitTag": "v2.7.29", "gitCommit": "abc", "buildDate": "x"},
    "envoy": {"version": "1.29.2", "build": "hash/1.29.2/Clean/RELEASE/BoringSSL"},
}


def subscription(i: int, acked: int = 4) -> DiscoverySubscription:
    stats = DiscoveryServiceStats(acked, acked, 0)
    return DiscoverySubscription(
        id=f"3f5c6a1e-9b1d-4c0e-8a2f-{i:012d}",
        control_plane_instance_id="zone-cp-7f3a",
        connect_time=1_764_800_000.123456 + i,
        status=SubscriptionStatus(1_764_800_100.5, stats, stats, stats, stats, stats),
        version=ENVOY,
    )


def dataplane(name: str) -> Dataplane:
    resource = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": name,
            "networking": {
                "address": "10.0.0.1",
                "inbound": [
                    {"port": 10000, "servicePort": 8000, "tags": {"kuma.io/service": "web"}}
                ],
            },
        }
    )
    assert isinstance(resource, Dataplane)
    return resource


def acked(insights: Insights, mesh: str, name: str) -> str | None:
    found = insights.insight(mesh, mapping.hashed_name(mesh, name, ZONE))
    if found is None:
        return None
    return str(found["subscriptions"][0]["status"]["total"]["responsesAcknowledged"])


@asynccontextmanager
async def synced(
    zone_insights: MemoryInsightStore,
    glob: MemoryStore,
    global_insights: Insights,
    stats_interval: float = 0.05,
    stats_slice: int = 100,
) -> AsyncIterator[MemoryPipe]:
    """The zone's feed, outbox and sender, global's receiver; yields the zone's end."""
    outbox = Outbox(MemoryStore(), partial(mapping.to_global, zone=ZONE))
    feed = InsightFeed(zone_insights, ZONE, stats_interval=stats_interval, stats_slice=stats_slice)
    global_end, zone_end = pipes()
    sink = zone_sink(glob, ZONE, global_insights.received)
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.run, outbox, outbox.hold())
        tg.start_soon(outbox.run)
        tg.start_soon(
            partial(sender.offer, extra=UP_URLS), zone_end, outbox, mapping.ZONE_KINDS, "global"
        )
        tg.start_soon(
            partial(receiver.take, extra=UP_URLS), global_end, sink, mapping.ZONE_KINDS, "zone"
        )
        try:
            yield zone_end
        finally:
            tg.cancel_scope.cancel()
            global_end.close()
            zone_end.close()


def insight_responses(pipe: MemoryPipe) -> list[Any]:
    return [
        r for r in pipe.sent if r.type_url == INSIGHT_URL and (r.resources or r.removed_resources)
    ]


async def test_zone_insights_reach_global_once_and_follow_changes() -> None:
    zone_insights = MemoryInsightStore()
    names = [f"web-{i:04d}" for i in range(COUNT)]
    await zone_insights.upsert([("default", n, subscription(i)) for i, n in enumerate(names)])
    await zone_insights.upsert([("", "ingress-1", subscription(COUNT))])
    glob = MemoryStore()
    global_insights = Insights(MemoryInsightStore(), flush_interval=10)
    received = global_insights.received
    on_global = mapping.hashed_name("default", "web-0007", ZONE)
    async with synced(zone_insights, glob, global_insights) as zone_end:
        await until(lambda: len(received) == COUNT + 1)
        first = insight_responses(zone_end)
        sent = sum(r.ByteSize() for r in first)
        print(
            f"\nKDS bytes for {COUNT + 1} insights: {sent} ({sent / (COUNT + 1):.0f} per insight)"
        )
        assert sum(len(r.resources) for r in first) == COUNT + 1
        # Global reads them under the names it gives the zone's proxies: Online.
        seen = global_insights.insight("default", on_global)
        assert is_online(seen)
        assert seen is not None
        assert seen["subscriptions"][0]["version"]["envoy"]["version"] == "1.29.2"
        assert is_online(global_insights.insight("", mapping.hashed_name("", "ingress-1", ZONE)))
        assert global_insights.insight("default", "web-0007") is None  # the zone's own name
        # Kept in global's insight store (shared by global instances on etcd).
        assert global_insights.store.get("default", on_global) is not None
        assert received.get("default", on_global) is None

        # One insight's counters change (a flush after ACKs): that one alone travels, with
        # the next stats pass.
        await zone_insights.upsert([("default", "web-0007", subscription(7, acked=9))])
        await until(lambda: len(insight_responses(zone_end)) > len(first))
        (update,) = insight_responses(zone_end)[len(first) :]
        assert [r.name for r in update.resources] == [f"default/{on_global}"]
        await until(lambda: acked(global_insights, "default", "web-0007") == "9")
        # Written again unchanged: nothing travels (the version is the same).
        before = len(zone_end.sent)
        await zone_insights.upsert([("default", "web-0007", subscription(7, acked=9))])
        await zone_insights.delete("default", "web-0008")  # a later change, to wait for
        await until(
            lambda: (
                global_insights.store.get(
                    "default", mapping.hashed_name("default", "web-0008", ZONE)
                )
                is None
            )
        )
        after = [r for r in zone_end.sent[before:] if r.type_url == INSIGHT_URL]
        assert sum(len(r.resources) for r in after) == 0
        assert [list(r.removed_resources) for r in after if r.removed_resources] == [
            [f"default/{mapping.hashed_name('default', 'web-0008', ZONE)}"]
        ]
    assert len(received) == COUNT


async def test_counters_wait_for_the_stats_pass_and_connections_go_at_once() -> None:
    """A change of counters only shares the stream with the zone's resources later; a proxy
    disconnecting goes at once, and carries its latest counters."""
    zone_insights = MemoryInsightStore()
    await zone_insights.upsert([("default", f"web-{i}", subscription(i)) for i in (1, 2)])
    global_insights = Insights(MemoryInsightStore(), flush_interval=10)

    def offline(i: int) -> DiscoverySubscription:
        return msgspec.structs.replace(subscription(i, acked=9), disconnect_time=1_764_800_200.0)

    def online(name: str) -> bool:
        on_global = mapping.hashed_name("default", name, ZONE)
        return is_online(global_insights.insight("default", on_global))

    async with synced(zone_insights, MemoryStore(), global_insights, stats_interval=3600):
        await until(lambda: len(global_insights.received) == 2)
        await zone_insights.upsert([("default", "web-1", subscription(1, acked=9))])
        await zone_insights.upsert([("default", "web-2", offline(2))])
        await until(lambda: not online("web-2"))
        assert acked(global_insights, "default", "web-2") == "9"
        # web-1's counters changed before web-2 went: they would have travelled first.
        assert acked(global_insights, "default", "web-1") == "4"
        await zone_insights.upsert([("default", "web-1", offline(1))])
        await until(lambda: not online("web-1"))
        assert acked(global_insights, "default", "web-1") == "9"


async def test_a_stats_pass_goes_up_in_slices() -> None:
    """Counters of many proxies do not go in one response: a resource change waits behind one
    slice, not behind every proxy's counters."""
    zone_insights = MemoryInsightStore()
    names = [f"web-{i}" for i in range(5)]
    await zone_insights.upsert([("default", n, subscription(i)) for i, n in enumerate(names)])
    global_insights = Insights(MemoryInsightStore(), flush_interval=10)
    async with synced(
        zone_insights, MemoryStore(), global_insights, stats_interval=0.01, stats_slice=2
    ) as zone_end:
        await until(lambda: len(global_insights.received) == 5)
        before = len(insight_responses(zone_end))
        await zone_insights.upsert(
            [("default", n, subscription(i, acked=9)) for i, n in enumerate(names)]
        )
        await until(lambda: all(acked(global_insights, "default", n) == "9" for n in names))
        sizes = [len(r.resources) for r in insight_responses(zone_end)[before:]]
    assert sizes == [2, 2, 1]


class PlainInsightStore(MemoryInsightStore):
    """An insight store that cannot take a whole insight (no ``replace``)."""

    replace = None  # type: ignore[assignment]


async def test_without_a_replacing_store_global_keeps_them_itself() -> None:
    global_insights = Insights(PlainInsightStore(), flush_interval=10)
    sink = InsightSink(global_insights.received, ZONE)
    sent = encode("default", "web-01", ZONE, _insight())
    assert await sink.apply([_Item(sent.name, sent.body)], []) == []
    on_global = mapping.hashed_name("default", "web-01", ZONE)
    assert global_insights.store.get("default", on_global) is None
    assert is_online(global_insights.insight("default", on_global))
    await sink.apply([], [sent.name])
    assert global_insights.insight("default", on_global) is None


async def test_a_reconnect_sends_only_what_global_does_not_hold() -> None:
    zone_insights = MemoryInsightStore()
    await zone_insights.upsert([("default", f"web-{i}", subscription(i)) for i in range(3)])
    glob = MemoryStore()
    global_insights = Insights(MemoryInsightStore(), flush_interval=10)
    async with synced(zone_insights, glob, global_insights):
        await until(lambda: len(global_insights.received) == 3)
    await zone_insights.upsert([("default", "web-1", subscription(1, acked=5))])
    async with synced(zone_insights, glob, global_insights) as zone_end:
        await until(lambda: acked(global_insights, "default", "web-1") == "5")
        sent = [name for r in insight_responses(zone_end) for name in r.resources]
        assert len(sent) == 1


async def test_a_zone_dataplane_deleted_on_global_takes_its_insight() -> None:
    glob = MemoryStore()
    global_insights = Insights(MemoryInsightStore(), flush_interval=10)
    shaped = mapping.to_global(dataplane("web-01"), ZONE)
    assert shaped is not None
    stored = await glob.create(shaped)
    sink = InsightSink(global_insights.received, ZONE)
    item = encode("default", "web-01", ZONE, _insight())
    assert await sink.apply([_Item(item.name, item.body)], []) == []
    assert is_online(global_insights.insight("default", shaped.name))
    await glob.delete(ResourceKey.of(shaped), version=stored.meta.version)
    global_insights.on_store_event(ResourceEvent(Operation.DELETE, shaped, stored.meta, 2))
    await global_insights.prune()
    assert global_insights.insight("default", shaped.name) is None


async def test_a_zone_cannot_speak_for_another_zones_proxy() -> None:
    global_insights = Insights(MemoryInsightStore(), flush_interval=10)
    sink = InsightSink(global_insights.received, ZONE)
    forged = encode("default", "web-01", "zone-2", _insight())
    errors = await sink.apply([_Item(forged.name, forged.body)], [])
    assert len(errors) == 1
    assert "not the name of default/web-01 of zone-1" in errors[0]
    bad = encode("default", "web-01", ZONE, _insight())
    errors = await sink.apply([_Item(bad.name, b'{"mesh": "default", "name": 7}')], [])
    assert "mesh and name must be strings" in errors[0]
    assert len(global_insights.received) == 0
    # Another zone's insight is not removed on this zone's word.
    other = InsightSink(global_insights.received, "zone-2")
    assert await other.apply([_Item(forged.name, forged.body)], []) == []
    await sink.apply([], [forged.name])
    assert len(global_insights.received) == 1


def _insight() -> DataplaneInsight:
    return DataplaneInsight((subscription(1),))


class _Item:
    """The shape of a protobuf Resource."""

    def __init__(self, name: str, body: bytes) -> None:
        self.name = name
        self.resource = type("Any", (), {"value": body})()
