"""A ZoneIngress's availableServices travel zone -> global as entries (kuma/kds/parts.py): a
change sends the changed entries only, global stores the whole ingress in Kuma's shape, a
reconnect sends only the entries that differ, a deletion leaves nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import msgspec
import pytest

from kuma.kds import mapping, parts, receiver, sender
from kuma.kds.outbox import Outbox
from kuma.kds.server import zone_sink
from kuma.resources import ResourceKey, ZoneIngress, from_document
from kuma.resources.model import AvailableService
from kuma.store import NotFoundError
from kuma.store.memory import MemoryStore

from .test_kds_resume import MemoryPipe, pipes, until

pytestmark = pytest.mark.anyio

ZONE = "zone-1"
SERVICES = 300


def entry(n: int, instances: int = 2) -> AvailableService:
    tags = {"kuma.io/service": f"svc-{n:03}", "kuma.io/zone": ZONE}
    return AvailableService(tags=tags, instances=instances, mesh="default")


def local_ingress(entries: tuple[AvailableService, ...]) -> ZoneIngress:
    resource = from_document(
        {
            "type": "ZoneIngress",
            "name": "ingress-1",
            "zone": ZONE,
            "networking": {"address": "10.0.0.9", "port": 10001},
        }
    )
    assert isinstance(resource, ZoneIngress)
    return msgspec.structs.replace(resource, available_services=entries)


def on_global(of: ZoneIngress) -> ZoneIngress:
    shaped = mapping.to_global(of, ZONE)
    assert isinstance(shaped, ZoneIngress)
    return shaped


async def stored(store: MemoryStore, of: ZoneIngress) -> ZoneIngress | None:
    try:
        found = (await store.get(ResourceKey.of(on_global(of)))).resource
    except NotFoundError:
        return None
    assert isinstance(found, ZoneIngress)
    return found


@asynccontextmanager
async def zone_to_global(
    outbox: Outbox, glob: MemoryStore
) -> AsyncIterator[tuple[MemoryPipe, MemoryPipe]]:
    """One connection: the zone offers, global takes into its sink for the zone; yields the
    zone's end (responses sent) and global's (requests sent: ACKs and NACKs)."""
    global_end, zone_end = pipes()
    offer = partial(sender.offer, zone="")
    async with anyio.create_task_group() as tg:
        tg.start_soon(offer, zone_end, outbox, mapping.ZONE_KINDS, "global")
        sink = zone_sink(glob, ZONE)
        tg.start_soon(receiver.take, global_end, sink, mapping.ZONE_KINDS, f"zone {ZONE}")
        try:
            yield zone_end, global_end
        finally:
            tg.cancel_scope.cancel()
            global_end.close()
            zone_end.close()


def sent(pipe: MemoryPipe, since: int = 0) -> tuple[dict[str, int], int, int]:
    """Resources sent by type (short name), removals, and bytes of resource bodies."""
    by_type: dict[str, int] = {}
    removed = size = 0
    for response in pipe.sent[since:]:
        short = response.type_url.rpartition("/")[2]
        by_type[short] = by_type.get(short, 0) + len(response.resources)
        removed += len(response.removed_resources)
        size += sum(len(r.resource.value) for r in response.resources)
    return {k: v for k, v in by_type.items() if v}, removed, size


def naks(pipe: MemoryPipe) -> list[Any]:
    return [r.error_detail.message for r in pipe.sent if r.HasField("error_detail")]


async def test_only_changed_entries_travel_and_global_keeps_kumas_shape() -> None:
    zone, glob = MemoryStore(), MemoryStore()
    first = local_ingress(tuple(entry(n) for n in range(SERVICES)))
    await zone.create(first)
    outbox = Outbox(zone, lambda r: mapping.to_global(r, ZONE))
    async with anyio.create_task_group() as tg:
        tg.start_soon(outbox.run)
        async with zone_to_global(outbox, glob) as (up, _):
            await until(glob, lambda: _equals(glob, first))
            # Global's copy is the whole ingress as the zone sent it (API shape unchanged).
            assert await stored(glob, first) == on_global(first)
            types, _, _ = sent(up)
            assert types == {"ZoneIngress": 1, "ZoneIngressService": SERVICES}

            # One count changes, one entry appears, one goes: three entries travel, not 300.
            mark = len(up.sent)
            changed = list(first.available_services)
            changed[7] = entry(7, instances=5)
            del changed[11]
            changed.append(entry(SERVICES))
            second = local_ingress(tuple(changed))
            current = await zone.get(ResourceKey.of(first))
            await zone.update(second, version=current.meta.version)
            await until(glob, lambda: _equals(glob, second))
            types, removed, size = sent(up, mark)
            assert types == {"ZoneIngressService": 2}
            assert removed == 1
            whole = len(msgspec.json.encode(on_global(second)))
            assert size * 50 < whole, (size, whole)

        # Apart: the zone changes one entry; after reconnecting, only that entry travels.
        third = local_ingress((entry(0, instances=9), *second.available_services[1:]))
        current = await zone.get(ResourceKey.of(first))
        await zone.update(third, version=current.meta.version)
        async with zone_to_global(outbox, glob) as (up, down):
            await until(glob, lambda: _equals(glob, third))
            assert sent(up)[:2] == ({"ZoneIngressService": 1}, 0)

            # The ingress goes: global drops it, and its entries' removals are no error.
            current = await zone.get(ResourceKey.of(first))
            await zone.delete(ResourceKey.of(first), version=current.meta.version)
            await until(glob, lambda: _gone(glob, first))
            # The entries' removals were answered (no NACK) once the ingress is gone.
            with anyio.fail_after(5):
                while not _answered(up, down):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert not naks(down)
        tg.cancel_scope.cancel()


async def test_the_ingress_part_keeps_the_stored_list() -> None:
    """An ingress change (its address) carries no entries and keeps global's list."""
    zone, glob = MemoryStore(), MemoryStore()
    first = local_ingress((entry(1), entry(2)))
    await zone.create(first)
    outbox = Outbox(zone, lambda r: mapping.to_global(r, ZONE))
    async with anyio.create_task_group() as tg:
        tg.start_soon(outbox.run)
        async with zone_to_global(outbox, glob) as (up, down):
            await until(glob, lambda: _equals(glob, first))
            mark = len(up.sent)
            assert first.networking is not None
            networking = msgspec.structs.replace(first.networking, address="10.0.0.10")
            moved = msgspec.structs.replace(first, networking=networking)
            current = await zone.get(ResourceKey.of(first))
            await zone.update(moved, version=current.meta.version)
            await until(glob, lambda: _equals(glob, moved))
            assert sent(up, mark)[:2] == ({"ZoneIngress": 1}, 0)
            assert not naks(down)
        tg.cancel_scope.cancel()


def test_an_entry_named_otherwise_is_refused() -> None:
    body = msgspec.json.encode(entry(1))
    with pytest.raises(ValueError, match="named otherwise"):
        parts.decode_entry(parts.entry_name("ingress-1", entry(2)), body)
    with pytest.raises(ValueError, match="<ingress>/<id>"):
        parts.decode_entry("no-slash", body)


async def _equals(glob: MemoryStore, of: ZoneIngress) -> bool:
    return await stored(glob, of) == on_global(of)


async def _gone(glob: MemoryStore, of: ZoneIngress) -> bool:
    return await stored(glob, of) is None


def _answered(up: MemoryPipe, down: MemoryPipe) -> bool:
    """Every response the zone sent has had its ACK or NACK."""
    answered = {r.response_nonce for r in down.sent if r.response_nonce}
    return all(r.nonce in answered for r in up.sent)
