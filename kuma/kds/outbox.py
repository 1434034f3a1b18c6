"""What one control plane offers on KDS: the store's resources of the kinds it sends, shaped
for the receiver (:mod:`.mapping`), encoded once (:mod:`.codec`) and shared by every stream.

The outbox follows the store's watch; each stream opens a :class:`View` that records which
names changed since it last looked, so a stream that is slow or disconnected costs the store
nothing and, once it looks again, the delta state machine sends only what differs.
A view is only opened after the outbox has the store's full snapshot: a partial view would
tell the receiver to delete what it has not been read yet.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import anyio

from kuma.resources import Resource, ResourceKey
from kuma.store import Operation, Store, Synced
from kuma.xds.snapshot import VersionedResource

from . import codec

log = logging.getLogger(__name__)

#: ``resource`` as the receiver stores it, or None when it does not travel.
Shape = Callable[[Resource], Resource | None]


class View:
    """One stream's look at the outbox: the resources, and the names changed since it last
    took them."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._changes: dict[str, set[str]] = {}
        self._event = anyio.Event()

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        return self._outbox.by_type.get(type_url, {})

    def take_changes(self) -> dict[str, set[str]]:
        changes, self._changes = self._changes, {}
        return changes

    async def wait_for_changes(self) -> None:
        if not self._changes:
            await self._event.wait()
        # Reset after waking, never before waiting: a poke in between is not lost.
        self._event = anyio.Event()

    def poke(self) -> None:
        """Wake the waiter (the peer's request created work)."""
        self._event.set()

    def _changed(self, type_url: str, name: str) -> None:
        self._changes.setdefault(type_url, set()).add(name)
        self._event.set()


class Outbox:
    def __init__(self, store: Store, shape: Shape) -> None:
        self._store = store
        self._shape = shape
        #: type URL -> wire name -> the encoded resource.
        self.by_type: dict[str, dict[str, VersionedResource]] = {}
        #: store key -> (type URL, wire name) of what it was sent as (a rename or a resource
        #: that stops travelling must remove the old one).
        self._sent_as: dict[ResourceKey, tuple[str, str]] = {}
        self._views: set[View] = set()
        self._synced = anyio.Event()

    async def run(self) -> None:
        async with self._store.watch() as events:
            async for item in events:
                if isinstance(item, Synced):
                    self._synced.set()
                    continue
                shaped = None
                if item.operation is not Operation.DELETE:
                    shaped = self._shape(item.resource)
                self._put(item.key, shaped)

    def _put(self, key: ResourceKey, shaped: Resource | None) -> None:
        old = self._sent_as.pop(key, None)
        if old is not None:
            self.by_type.get(old[0], {}).pop(old[1], None)
            self._notify(*old)
        if shaped is None:
            return
        encoded = codec.encode(shaped)
        self.by_type.setdefault(encoded.type_url, {})[encoded.name] = encoded
        self._sent_as[key] = (encoded.type_url, encoded.name)
        self._notify(encoded.type_url, encoded.name)

    def _notify(self, type_url: str, name: str) -> None:
        for view in self._views:
            view._changed(type_url, name)

    @asynccontextmanager
    async def view(self) -> AsyncIterator[View]:
        await self._synced.wait()
        view = View(self)
        self._views.add(view)
        try:
            yield view
        finally:
            self._views.discard(view)
