"""Fan-out of change events to watchers, with the snapshot-then-changes guarantee.

Used by stores that own their state in memory. Registering a watcher and taking its snapshot
happen in one step with no await in between, so no change can fall between the snapshot and
the first live event. Each watcher has its own unbounded queue: a store never blocks or drops
a change because one consumer is slow (the engine, the only heavy consumer, coalesces itself).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from kuma.resources import StoredResource

from .protocol import Operation, ResourceEvent, Synced, WatchItem


class WatchHub:
    def __init__(self) -> None:
        self._watchers: set[MemoryObjectSendStream[WatchItem]] = set()

    def publish(self, event: ResourceEvent) -> None:
        for send in tuple(self._watchers):
            try:
                send.send_nowait(event)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._watchers.discard(send)

    def close(self) -> None:
        """End every open watch (the store is closing)."""
        for send in self._watchers:
            send.close()
        self._watchers.clear()

    @asynccontextmanager
    async def watch(
        self, snapshot: Callable[[], tuple[Iterable[StoredResource], int]]
    ) -> AsyncIterator[AsyncIterator[WatchItem]]:
        """Open a watch. ``snapshot()`` returns the current state and revision; it runs in the
        same step as the registration, so it is consistent with the events that follow."""
        send, receive = anyio.create_memory_object_stream[WatchItem](math.inf)
        resources, revision = snapshot()
        for stored in resources:
            event = ResourceEvent(Operation.CREATE, stored.resource, stored.meta, revision)
            send.send_nowait(event)
        send.send_nowait(Synced(revision))
        self._watchers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._watchers.discard(send)
            send.close()
