"""A disabled zone's ZoneIngresses are held back from the other zones (Kuma's
GlobalProvidedFilter, kuma/kds/zone_gate.py): zone-1 loses zone-2's ingress when global's Zone
zone-2 gets ``enabled: false`` and gets it back when it is enabled or deleted."""

from __future__ import annotations

import anyio
import pytest

from kuma.kds.server import global_outbox
from kuma.resources import ResourceKey, Zone
from kuma.store import NotFoundError
from kuma.store.memory import MemoryStore

from .test_kds_ingresses import eventually_equal, ingress_names_sent, ingress_of, instances_on
from .test_kds_resume import connected, until

pytestmark = pytest.mark.anyio


async def set_zone(store: MemoryStore, name: str, *, enabled: bool) -> None:
    zone = Zone(name=name, enabled=enabled)
    try:
        current = await store.get(ResourceKey.of(zone))
    except NotFoundError:
        await store.create(zone)
        return
    await store.update(zone, version=current.meta.version)


async def test_a_disabled_zones_ingress_is_held_back_from_the_other_zones() -> None:
    glob, zone_1 = MemoryStore(), MemoryStore()
    of_2, of_3 = ingress_of(2, instances=2), ingress_of(3, instances=3)
    for resource in (of_2, of_3):
        await glob.create(resource)
    await set_zone(glob, "zone-2", enabled=False)  # disabled before global starts
    await set_zone(glob, "zone-3", enabled=True)
    outbox = global_outbox(glob)  # as serve_kds builds it
    async with anyio.create_task_group() as tg:
        tg.start_soon(outbox.run)
        async with connected(outbox, zone_1, "zone-1") as to_1:
            await until(zone_1, lambda: eventually_equal(instances_on(zone_1, of_3), 3))
            # Both were in global's snapshot: only zone-3's went.
            assert ingress_names_sent(to_1) == {of_3.name}
            assert await instances_on(zone_1, of_2) is None

            await set_zone(glob, "zone-2", enabled=True)
            await until(zone_1, lambda: eventually_equal(instances_on(zone_1, of_2), 2))

            # Disabled while zone-1 holds it: zone-1 is told to delete it (entries too).
            await set_zone(glob, "zone-2", enabled=False)
            await until(zone_1, lambda: eventually_equal(instances_on(zone_1, of_2), None))
            assert await instances_on(zone_1, of_3) == 3  # zone-3 untouched
            # An ingress of the disabled zone that changes meanwhile still does not travel;
            # zone-3's change does (and is seen after it, in order).
            current = await glob.get(ResourceKey.of(of_2))
            await glob.update(ingress_of(2, instances=5), version=current.meta.version)
            current = await glob.get(ResourceKey.of(of_3))
            await glob.update(ingress_of(3, instances=4), version=current.meta.version)
            await until(zone_1, lambda: eventually_equal(instances_on(zone_1, of_3), 4))
            assert await instances_on(zone_1, of_2) is None

            # A deleted Zone holds nothing back (Kuma: no Zone, no strong decision).
            await glob.delete(ResourceKey.of(Zone(name="zone-2")))
            await until(zone_1, lambda: eventually_equal(instances_on(zone_1, of_2), 5))
        tg.cancel_scope.cancel()
