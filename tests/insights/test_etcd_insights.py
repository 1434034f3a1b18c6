"""DataplaneInsights in etcd (plugins/kuma_etcd_store/insights.py): two "instances" (two etcd stores
and two Insights on one real etcd, one prefix) share them, and they survive a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest

from kuma.insights import DataplaneInsight, Insights, insight_store_for, is_online
from kuma.insights.model import DiscoverySubscription
from kuma.store import StoreConfigError
from kuma.xds.generate.types import CLUSTER
from kuma_etcd_store import EtcdStore, parse_options
from kuma_etcd_store.insights import EtcdInsightStore
from tests.fixtures.etcd import EtcdServer
from tests.store.harness_etcd import etcd_store, eventually, raw_client
from tests.store.watching import assert_quiet, read_snapshot

pytestmark = [pytest.mark.anyio, pytest.mark.etcd]


@asynccontextmanager
async def instance(
    server: EtcdServer, prefix: str, instance_id: str
) -> AsyncIterator[tuple[EtcdStore, Insights]]:
    """One control plane's store and insights (not running: the tests flush by hand)."""
    async with etcd_store(server.endpoint, prefix) as store:
        insights = Insights(insight_store_for(store), flush_interval=10, instance_id=instance_id)
        assert isinstance(insights.store, EtcdInsightStore)
        yield store, insights


def connect(insights: Insights, stream_id: int, node: str = "default.web-1") -> None:
    insights.tracker.on_stream_open(stream_id, node, "delta", "1.40.0")
    insights.tracker.on_response(node, CLUSTER, 1, "1")
    insights.tracker.on_ack(node, CLUSTER, "1")


def subscription(sub_id: str, instance_id: str, connected: float) -> DiscoverySubscription:
    return DiscoverySubscription(sub_id, instance_id, connected)


async def test_a_proxy_on_one_instance_is_seen_by_the_other(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async with (
        instance(etcd_server, etcd_prefix, "cp-a") as (_, a),
        instance(etcd_server, etcd_prefix, "cp-b") as (_, b),
    ):
        connect(a, 1)
        assert b.insight("default", "web-1") is None
        assert await a.flusher.flush_all() == 1

        def online_on_b() -> bool:
            return is_online(b.insight("default", "web-1"))

        await eventually(online_on_b)
        seen = b.insight("default", "web-1")
        assert seen is not None
        [sub] = seen["subscriptions"]
        assert sub["controlPlaneInstanceId"] == "cp-a"
        assert sub["status"]["cds"] == {"responsesSent": "1", "responsesAcknowledged": "1"}

        a.tracker.on_stream_close(1, "default.web-1")
        await a.flusher.flush_all()
        await eventually(lambda: not online_on_b())
        assert "disconnectTime" in (b.insight("default", "web-1") or {})["subscriptions"][0]


async def test_both_instances_subscriptions_are_kept_and_shown(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async with (
        instance(etcd_server, etcd_prefix, "cp-a") as (_, a),
        instance(etcd_server, etcd_prefix, "cp-b") as (_, b),
    ):
        connect(a, 1)
        await a.flusher.flush_all()
        assert isinstance(b.store, EtcdInsightStore)
        await eventually(lambda: b.store.get("default", "web-1") is not None)
        # The proxy reconnects to B: B's flush keeps A's subscription (Kuma's merge: A's is
        # closed, since B cannot know A still holds it open) and appends its own.
        connect(b, 7)
        await b.flusher.flush_all()

        def ids_on(insights: Insights) -> list[str]:
            insight = insights.insight("default", "web-1") or {"subscriptions": []}
            return [s["controlPlaneInstanceId"] for s in insight["subscriptions"]]

        await eventually(lambda: ids_on(a) == ["cp-a", "cp-b"])
        assert ids_on(b) == ["cp-a", "cp-b"]
        # A's read lays its live (open) subscription over the stored one.
        assert is_online(a.insight("default", "web-1"))


async def test_a_stale_write_is_merged_not_lost(etcd_server: EtcdServer, etcd_prefix: str) -> None:
    """Without followers, each store's view is stale: the CAS fails and the merge is redone."""
    async with (
        etcd_store(etcd_server.endpoint, etcd_prefix) as first,
        etcd_store(etcd_server.endpoint, etcd_prefix) as second,
    ):
        x, y = EtcdInsightStore(first), EtcdInsightStore(second)
        await x.upsert([("default", "web-1", subscription("a1", "cp-a", 100.0))])
        await y.upsert([("default", "web-1", subscription("b1", "cp-b", 200.0))])
        assert (x.conflicts, y.conflicts) == (0, 1)
        closed = DiscoverySubscription("a1", "cp-a", 100.0, disconnect_time=300.0)
        await x.upsert([("default", "web-1", closed)])
        assert x.conflicts == 1
        merged = x.get("default", "web-1")
        assert merged is not None
        assert [(s.id, s.disconnect_time) for s in merged.subscriptions] == [
            ("a1", 300.0),
            ("b1", None),
        ]


async def test_insights_survive_a_restart(etcd_server: EtcdServer, etcd_prefix: str) -> None:
    async with instance(etcd_server, etcd_prefix, "cp-a") as (_, a):
        connect(a, 1)
        await a.flusher.flush_all()
    async with instance(etcd_server, etcd_prefix, "cp-a2") as (store, again):
        assert isinstance(again.store, EtcdInsightStore)
        assert store.insight_store() is again.store  # one per store, one follower
        await eventually(again.store.synced.is_set)
        insight = again.insight("default", "web-1")
        assert insight is not None
        assert insight["subscriptions"][0]["controlPlaneInstanceId"] == "cp-a"


async def test_insight_writes_never_reach_a_resource_watch(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async with instance(etcd_server, etcd_prefix, "cp-a") as (store, a):
        async with store.watch() as events:
            await read_snapshot(events)
            for stream_id in range(50):
                connect(a, stream_id, f"default.web-{stream_id}")
            await a.flusher.flush_all()
            await a.store.delete("default", "web-3")
            await assert_quiet(events, seconds=1.0)
        async with raw_client(etcd_server.endpoint) as client:
            stored = await client.get_prefix(f"{etcd_prefix}-insights/".encode(), keys_only=True)
            assert len(stored) == 49
        # The resource side sees nothing either: no problems reported for unknown keys.
        assert store.problems() == []


async def test_a_batch_is_written_in_transactions_of_etcds_op_limit(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async with (
        instance(etcd_server, etcd_prefix, "cp-a") as (_, a),
        instance(etcd_server, etcd_prefix, "cp-b") as (_, b),
    ):
        assert isinstance(a.store, EtcdInsightStore)
        assert isinstance(b.store, EtcdInsightStore)
        for stream_id in range(300):
            connect(a, stream_id, f"default.web-{stream_id}")
        assert await a.flusher.flush_all() == 300
        # One upsert of 300 (the flusher's batch is 500): 128 + 128 + 44 keys.
        assert (a.store.writes, a.store.txns, a.store.conflicts) == (1, 3, 0)
        b_store = b.store
        await eventually(lambda: len(b_store) == 300)


async def test_a_value_written_by_hand_is_ignored_then_replaced(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    key = f"{etcd_prefix}-insights/default/web-1".encode()
    async with raw_client(etcd_server.endpoint) as client:
        await client.put(key, b'{"subscriptions": "no"}')
    async with instance(etcd_server, etcd_prefix, "cp-a") as (_, a):
        assert isinstance(a.store, EtcdInsightStore)
        await eventually(a.store.synced.is_set)
        assert a.store.get("default", "web-1") is None
        await a.store.upsert([("default", "web-1", subscription("a1", "cp-a", 1.0))])
        stored = a.store.get("default", "web-1")
        assert stored is not None
        assert [s.id for s in stored.subscriptions] == ["a1"]


def test_a_prefix_may_not_end_like_another_ones_insights() -> None:
    with pytest.raises(StoreConfigError, match="-insights"):
        parse_options({"endpoints": ["http://127.0.0.1:2379"], "prefix": "/kuma-insights"})


async def test_deleted_insights_disappear_everywhere(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async with AsyncExitStack() as stack:
        _, a = await stack.enter_async_context(instance(etcd_server, etcd_prefix, "cp-a"))
        _, b = await stack.enter_async_context(instance(etcd_server, etcd_prefix, "cp-b"))
        connect(a, 1)
        a.tracker.on_stream_close(1, "default.web-1")
        await a.flusher.flush_all()
        await eventually(lambda: b.insight("default", "web-1") is not None)
        await b.store.delete("default", "web-1")
        assert b.insight("default", "web-1") is None
        await eventually(lambda: a.insight("default", "web-1") is None)


async def test_a_zones_insight_received_by_one_global_instance_is_read_by_the_other(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    # kuma/insights/received.py: written whole (both zone instances' live subscriptions kept,
    # none closed as another writer's), read by every instance, withdrawn everywhere.
    async with (
        instance(etcd_server, etcd_prefix, "global-a") as (_, a),
        instance(etcd_server, etcd_prefix, "global-b") as (_, b),
    ):
        zones = DataplaneInsight(
            (subscription("s1", "zone-cp-1", 1.0), subscription("s2", "zone-cp-2", 2.0))
        )
        await a.received.put("zone-1", "default", "web-1-zxc", "v1", zones)
        await eventually(lambda: is_online(b.insight("default", "web-1-zxc")))
        seen = b.insight("default", "web-1-zxc") or {}
        assert [s.get("disconnectTime") for s in seen["subscriptions"]] == [None, None]
        await a.received.remove("zone-2", "default", "web-1-zxc")  # not zone-2's to withdraw
        await a.received.remove("zone-1", "default", "web-1-zxc")
        await eventually(lambda: b.insight("default", "web-1-zxc") is None)
