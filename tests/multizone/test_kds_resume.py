"""KDS's sending and receiving sides over an in-memory stream (kuma/kds/sender.py,
receiver.py, sink.py): what a zone gets from global, and that after a reconnect only the
differences travel, deletions made while apart included; a zone's own policies stay."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from kuma.kds import codec, mapping, receiver, sender
from kuma.kds.client import global_sink
from kuma.kds.outbox import Outbox
from kuma.resources import Mesh, ResourceKey, decode_one
from kuma.store import NotFoundError
from kuma.store.memory import MemoryStore

pytestmark = pytest.mark.anyio


def timeout(name: str, value: str = "17s", origin: str = "") -> Any:
    labels = f"labels:\n  kuma.io/origin: {origin}\n" if origin else ""
    return decode_one(
        f"type: MeshTimeout\nmesh: default\nname: {name}\n{labels}spec:\n  targetRef:\n"
        f"    kind: Mesh\n  to:\n  - targetRef:\n      kind: Mesh\n    default:\n"
        f"      connectionTimeout: {value}\n"
    )


class MemoryPipe:
    def __init__(
        self, send: MemoryObjectSendStream[Any], receive: MemoryObjectReceiveStream[Any]
    ) -> None:
        self._send = send
        self._receive = receive
        self.sent: list[Any] = []

    async def recv_message(self) -> Any:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            return None

    async def send_message(self, message: Any) -> None:
        self.sent.append(message)
        await self._send.send(message)

    def close(self) -> None:
        self._send.close()
        self._receive.close()


def pipes() -> tuple[MemoryPipe, MemoryPipe]:
    to_zone, zone_in = anyio.create_memory_object_stream[Any](100)
    to_global, global_in = anyio.create_memory_object_stream[Any](100)
    return MemoryPipe(to_zone, global_in), MemoryPipe(to_global, zone_in)


@asynccontextmanager
async def connected(outbox: Outbox, zone: MemoryStore, name: str = "") -> AsyncIterator[MemoryPipe]:
    """One connection: global offers, the zone (named ``name``) takes; closed (both ends) on
    exit."""
    global_end, zone_end = pipes()
    offer = partial(sender.offer, zone=name)
    async with anyio.create_task_group() as tg:
        tg.start_soon(offer, global_end, outbox, mapping.global_kinds(), f"zone {name}")
        tg.start_soon(receiver.take, zone_end, global_sink(zone), mapping.global_kinds(), "global")
        try:
            yield global_end
        finally:
            tg.cancel_scope.cancel()
            global_end.close()
            zone_end.close()


async def until(store: MemoryStore, check: Callable[[], Awaitable[object]]) -> None:
    """Wait for ``check`` to hold, looking again after each change of ``store``."""
    with anyio.fail_after(5):
        async with store.watch() as events:
            async for _ in events:
                if await check():
                    return


def sent_counts(pipe: MemoryPipe) -> tuple[int, int]:
    return (
        sum(len(r.resources) for r in pipe.sent),
        sum(len(r.removed_resources) for r in pipe.sent),
    )


async def held(store: MemoryStore, name: str) -> Any:
    try:
        key = ResourceKey("MeshTimeout", "default", mapping.hashed_name("default", name))
        return (await store.get(key)).resource
    except NotFoundError:
        return None


async def test_reconnect_sends_only_the_differences() -> None:
    glob, zone = MemoryStore(), MemoryStore()
    await glob.create(Mesh(name="default"))
    for name in ("a", "b", "c"):
        await glob.create(timeout(name))
    await zone.create(timeout("zones-own", origin="zone"))
    outbox = Outbox(glob, mapping.to_zone)
    async with anyio.create_task_group() as tg:
        tg.start_soon(outbox.run)
        async with connected(outbox, zone) as first:
            await until(zone, lambda: held(zone, "c"))
            assert sent_counts(first) == (4, 0)
            stored = await held(zone, "a")
            assert stored.labels == {"kuma.io/origin": "global"}
            # Live changes travel one by one.
            b = await glob.get(ResourceKey("MeshTimeout", "default", "b"))
            await glob.update(timeout("b", "1s"), version=b.meta.version)

            async def b_updated() -> bool:
                return "1s" in str(await held(zone, "b"))

            await until(zone, b_updated)
            assert sent_counts(first) == (5, 0)

        # Apart: global changes one policy, deletes one, adds one.
        a = await glob.get(ResourceKey("MeshTimeout", "default", "a"))
        await glob.update(timeout("a", "2s"), version=a.meta.version)
        await glob.delete(ResourceKey("MeshTimeout", "default", "c"))
        await glob.create(timeout("d"))
        async with connected(outbox, zone) as second:

            async def caught_up() -> bool:
                return (
                    await held(zone, "c") is None
                    and await held(zone, "d") is not None
                    and "2s" in str(await held(zone, "a"))
                )

            await until(zone, caught_up)
            assert sent_counts(second) == (2, 1)
            # The zone's own policy is neither replaced nor deleted.
            own = await zone.get(ResourceKey("MeshTimeout", "default", "zones-own"))
            assert own.resource == timeout("zones-own", origin="zone")
        tg.cancel_scope.cancel()


async def test_a_zone_keeps_its_own_policy_of_the_same_name() -> None:
    zone = MemoryStore()
    clash = mapping.hashed_name("default", "x")
    await zone.create(timeout(clash, "9s", origin="zone"))
    sink = global_sink(zone)
    down = mapping.to_zone(timeout("x"))
    assert down is not None
    sent = codec.encode(down)

    class Item:
        name = sent.name

        class resource:  # the shape of a protobuf Resource
            value = sent.body

    error = await sink.apply(sent.type_url, [Item()], [sent.name])
    assert "is not from the peer" in error
    kept = await zone.get(ResourceKey("MeshTimeout", "default", clash))
    assert "9s" in str(kept.resource)
