"""Other zones' ZoneIngresses travel global -> zone (Kuma's GlobalToAllButOriginalZoneFlag):
zone-1 holds zone-2's ingress, labelled as global sent it, and never its own; changes and the
removal follow; global refuses an ingress that claims another zone."""

from __future__ import annotations

from collections.abc import Awaitable

import anyio
import msgspec
import pytest

from kuma.kds import codec, mapping, parts
from kuma.kds.outbox import Outbox
from kuma.resources import ResourceKey, ZoneIngress, decode_one
from kuma.store import NotFoundError
from kuma.store.memory import MemoryStore

from .test_kds_resume import MemoryPipe, connected, until

pytestmark = pytest.mark.anyio

INGRESS = """\
type: ZoneIngress
name: ingress
networking:
  address: 10.0.{n}.9
  port: 10001
  advertisedAddress: 192.0.2.{n}
  advertisedPort: 10001
availableServices:
- mesh: default
  instances: {instances}
  tags:
    kuma.io/service: backend
    kuma.io/zone: zone-{n}
"""


def ingress_of(n: int, instances: int = 1) -> ZoneIngress:
    """Zone ``zone-<n>``'s ingress as global stores it (what the zone's sender shapes)."""
    local = decode_one(INGRESS.format(n=n, instances=instances))
    shaped = mapping.to_global(local, f"zone-{n}")
    assert isinstance(shaped, ZoneIngress)
    assert mapping.zone_violation(shaped, f"zone-{n}") is None
    return shaped


async def ingress_on(store: MemoryStore, of: ZoneIngress) -> ZoneIngress | None:
    try:
        found = (await store.get(ResourceKey.of(of))).resource
    except NotFoundError:
        return None
    assert isinstance(found, ZoneIngress)
    return found


async def instances_on(store: MemoryStore, of: ZoneIngress) -> int | None:
    found = await ingress_on(store, of)
    # The list travels as entries after the ingress (kuma/kds/parts.py): empty at first.
    if found is None or not found.available_services:
        return None
    return found.available_services[0].instances


async def eventually_equal(value: Awaitable[object], wanted: object) -> bool:
    return await value == wanted


def ingress_names_sent(pipe: MemoryPipe) -> set[str]:
    """The ingresses a pipe carried, themselves or their entries (``<ingress>/<id>``)."""
    urls = (codec.type_url(ZoneIngress.TYPE), parts.ENTRY_URL)
    return {
        name.partition("/")[0]
        for response in pipe.sent
        if response.type_url in urls
        for name in [*(r.name for r in response.resources), *response.removed_resources]
    }


async def test_a_zone_gets_the_other_zones_ingresses_never_its_own() -> None:
    glob, zone_1, zone_2 = MemoryStore(), MemoryStore(), MemoryStore()
    own, other = ingress_of(1), ingress_of(2)
    await glob.create(own)
    await glob.create(other)
    outbox = Outbox(glob, mapping.to_zone, mapping.withheld_from)
    async with anyio.create_task_group() as tg:
        tg.start_soon(outbox.run)
        async with (
            connected(outbox, zone_1, "zone-1") as to_1,
            connected(outbox, zone_2, "zone-2") as to_2,
        ):
            await until(zone_1, lambda: instances_on(zone_1, other))
            await until(zone_2, lambda: instances_on(zone_2, own))
            held = await ingress_on(zone_1, other)
            assert held is not None
            # As Kuma stores it on the zone: global's name, kuma.io/zone of the ingress's
            # zone, origin global, the spec as the owning zone sent it.
            assert held.name == mapping.hashed_name("", "ingress", "zone-2")
            assert held.labels == {
                "kuma.io/origin": "global",
                "kuma.io/zone": "zone-2",
                "kuma.io/display-name": "ingress",
            }
            assert held.zone == "zone-2"
            assert held.available_services == other.available_services
            assert mapping.from_global(held)

            # An update of zone-2's ingress reaches zone-1; zone-2 hears nothing of it.
            current = await glob.get(ResourceKey.of(other))
            await glob.update(ingress_of(2, instances=3), version=current.meta.version)

            await until(zone_1, lambda: eventually_equal(instances_on(zone_1, other), 3))
            # Removed on global: removed on zone-1.
            await glob.delete(ResourceKey.of(other))

            await until(zone_1, lambda: eventually_equal(ingress_on(zone_1, other), None))
            # A change of zone-1's own ingress goes to zone-2 only.
            current = await glob.get(ResourceKey.of(own))
            await glob.update(ingress_of(1, instances=2), version=current.meta.version)

            await until(zone_2, lambda: eventually_equal(instances_on(zone_2, own), 2))
            assert await ingress_on(zone_1, own) is None
            assert await ingress_on(zone_2, other) is None
            assert own.name not in ingress_names_sent(to_1)
            assert other.name not in ingress_names_sent(to_2)
            assert ingress_names_sent(to_1) == {other.name}
        tg.cancel_scope.cancel()


def test_global_refuses_an_ingress_claiming_another_zone() -> None:
    shaped = ingress_of(1)
    forged = msgspec.structs.replace(shaped, zone="zone-2")
    assert mapping.zone_violation(forged, "zone-1") == 'zone must be "zone-1"'
    # Without a zone (not from a zone), nothing goes down.
    assert mapping.to_zone(msgspec.structs.replace(shaped, zone="")) is None
    assert mapping.to_zone(decode_one(INGRESS.format(n=1, instances=1))) is None
    assert mapping.withheld_from(shaped) == "zone-1"


def test_a_zone_never_sends_another_zones_ingress_up() -> None:
    """zone-1 holds zone-2's ingress as global sent it: it does not send it up as its own
    (found by tests/integration/test_cross_zone_kds_traffic.py: global then sent it to zone-2
    labelled zone-1)."""
    held = mapping.to_zone(ingress_of(2))
    assert held is not None
    assert mapping.to_global(held, "zone-1") is None
    unlabelled = msgspec.structs.replace(held, labels={})
    assert mapping.to_global(unlabelled, "zone-1") is None  # its zone names another
    own = decode_one(INGRESS.format(n=1, instances=1))
    assert mapping.to_global(own, "zone-1") is not None
