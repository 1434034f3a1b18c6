"""Two global instances on one etcd (kuma/kds/zone_status.py): a zone's Zone is created once
however many instances admit it at the same time; a zone connected to both has both
subscriptions in its ZoneInsight (compare-and-swap merges); an instance's sweep closes only the
subscriptions of instances the etcd lease keys do not show alive."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

from kuma.kds.zone_status import ZoneStatus
from kuma.resources import ResourceKey, Zone, ZoneInsight
from kuma.resources.zone_insight import KdsSubscription
from kuma_etcd_store import EtcdStore
from tests.fixtures.etcd import EtcdServer
from tests.store.harness_etcd import etcd_store

pytestmark = pytest.mark.anyio


async def test_two_global_instances_share_zones(etcd_server: EtcdServer, etcd_prefix: str) -> None:
    async with (
        etcd_store(etcd_server.endpoint, etcd_prefix) as store_a,
        etcd_store(etcd_server.endpoint, etcd_prefix) as store_b,
        anyio.create_task_group() as tg,
    ):
        a = ZoneStatus(store_a, "global-a", live=store_a.instances().live)
        b = ZoneStatus(store_b, "global-b", live=store_b.instances().live)
        tg.start_soon(store_a.instances().keep_alive, "global-a")
        b_alive = anyio.CancelScope()

        async def keep_b_alive() -> None:
            with b_alive:
                await store_b.instances().keep_alive("global-b")

        tg.start_soon(keep_b_alive)
        zones = [f"zone-{i}" for i in range(5)]
        async with anyio.create_task_group() as racing:
            for zone in zones:
                for status in (a, b, a, b):
                    racing.start_soon(status.admit, zone)
        listed = await store_a.list(Zone.TYPE)
        assert sorted(item.resource.name for item in listed.items) == zones
        assert all(
            item.resource == Zone(name=item.resource.name, enabled=True) for item in listed.items
        )

        # zone-0 connected to both instances at once, and to one that died long ago.
        then = datetime(2026, 12, 4, tzinfo=UTC)
        dead = KdsSubscription(id="old", global_instance_id="global-dead", connect_time=then)
        await store_a.create(ZoneInsight(name="zone-0", subscriptions=(dead,)))
        await live_are(a, {"global-a", "global-b"})
        async with a.subscription("zone-0"), b.subscription("zone-0"):
            await a.sweep()
            assert await online_by_instance(store_b) == {
                "global-dead": False,
                "global-a": True,
                "global-b": True,
            }
            # global-b dies without closing its subscription (its lease key goes).
            b_alive.cancel()
            await live_are(a, {"global-a"})
            await a.sweep()
            assert await online_by_instance(store_b) == {
                "global-dead": False,
                "global-a": True,
                "global-b": False,
            }
        assert not any((await online_by_instance(store_a)).values())
        tg.cancel_scope.cancel()


async def online_by_instance(store: EtcdStore) -> dict[str, bool]:
    stored = await store.get(ResourceKey(ZoneInsight.TYPE, "", "zone-0"))
    assert isinstance(stored.resource, ZoneInsight)
    return {s.global_instance_id: s.online for s in stored.resource.subscriptions}


async def live_are(status: ZoneStatus, wanted: set[str]) -> None:
    """Wait (at most 20 s) until the lease keys show exactly ``wanted`` alive."""
    assert status.live is not None
    for _ in range(200):
        if await status.live() == wanted:
            return
        await anyio.sleep(0.1)
    raise AssertionError(f"live instances never became {wanted}: {await status.live()}")
