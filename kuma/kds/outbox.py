"""What one control plane offers on KDS: the store's resources of the kinds it sends, shaped
for the receiver (:mod:`.mapping`), encoded once (:mod:`.codec`; a ZoneIngress as parts,
:mod:`.parts`) and shared by every stream.

The outbox follows the store's watch; each stream opens a :class:`View` that records which
names changed since it last looked, so a stream that is slow or disconnected costs the store
nothing and, once it looks again, the delta state machine sends only what differs.
A view is only opened after the outbox has the store's full snapshot: a partial view would
tell the receiver to delete what it has not been read yet.

A resource may be withheld from one peer (a zone's own ZoneIngress is never sent back to it):
that peer's view neither lists it nor hears of its changes, every other view does. A gate
(:mod:`.zone_gate`) may hold a resource back from every peer, and name stored resources to
shape again when what it decides on changes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Set
from contextlib import asynccontextmanager

import anyio

from kuma.resources import Resource, ResourceKey
from kuma.store import Operation, Store, Synced
from kuma.xds.snapshot import VersionedResource

from . import parts
from .zone_gate import ZoneGate

log = logging.getLogger(__name__)

#: ``resource`` as the receiver stores it, or None when it does not travel.
Shape = Callable[[Resource], Resource | None]
#: The peer a shaped resource must not reach (None: every peer).
Withhold = Callable[[Resource], str | None]


class _Without(Mapping[str, VersionedResource]):
    """A type's resources minus the names withheld from one peer (few: its own ingresses)."""

    def __init__(self, items: Mapping[str, VersionedResource], hidden: Set[str]) -> None:
        self._items = items
        self._hidden = hidden

    def __getitem__(self, name: str) -> VersionedResource:
        if name in self._hidden:
            raise KeyError(name)
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._items if name not in self._hidden)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class View:
    """One stream's look at the outbox: the resources, and the names changed since it last
    took them."""

    def __init__(self, outbox: Outbox, peer: str = "") -> None:
        self._outbox = outbox
        #: The peer this view serves (what is withheld from it stays out).
        self.peer = peer
        self._changes: dict[str, set[str]] = {}
        self._event = anyio.Event()

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        items = self._outbox.by_type.get(type_url, {})
        hidden = self._outbox.withheld.get((type_url, self.peer)) if self.peer else None
        return _Without(items, hidden) if hidden else items

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

    def _changed(self, type_url: str, name: str, withheld_from: str | None) -> None:
        if withheld_from is not None and withheld_from == self.peer:
            return
        self._changes.setdefault(type_url, set()).add(name)
        self._event.set()


class Outbox:
    def __init__(
        self,
        store: Store,
        shape: Shape,
        withhold: Withhold | None = None,
        gate: ZoneGate | None = None,
    ) -> None:
        self._store = store
        self._shape = shape
        self._withhold = withhold
        self._gate = gate
        #: (type URL, peer) -> wire names withheld from that peer.
        self.withheld: dict[tuple[str, str], set[str]] = {}
        #: type URL -> wire name -> the encoded resource.
        self.by_type: dict[str, dict[str, VersionedResource]] = {}
        #: store key -> (peer withheld from, (type URL, wire name) -> version) of what it was
        #: sent as (a rename or a resource that stops travelling must remove the old ones).
        self._sent_as: dict[ResourceKey, tuple[str | None, dict[tuple[str, str], str]]] = {}
        self._views: set[View] = set()
        #: Set once the store's snapshot is in and no :meth:`hold` is pending.
        self._synced = anyio.Event()
        self._store_synced = False
        self._holds = 0

    async def run(self) -> None:
        async with self._store.watch() as events:
            async for item in events:
                if isinstance(item, Synced):
                    self._store_synced = True
                    self._maybe_ready()
                    continue
                again = self._gate.follow(item) if self._gate is not None else ()
                shaped = None
                if item.operation is not Operation.DELETE:
                    shaped = self._shaped(item.resource)
                self._put(item.key, shaped)
                for key, resource in again:
                    self._put(key, self._shaped(resource))

    def _shaped(self, resource: Resource) -> Resource | None:
        if self._gate is not None and not self._gate.admits(resource):
            return None
        return self._shape(resource)

    def _put(self, key: ResourceKey, shaped: Resource | None) -> None:
        # A resource may travel as several (a ZoneIngress and its entries, :mod:`.parts`):
        # only those whose version changed are announced.
        new: dict[tuple[str, str], VersionedResource] = {}
        peer = None
        if shaped is not None:
            new = {(e.type_url, e.name): e for e in parts.encode_all(shaped)}
            peer = self._withhold(shaped) if self._withhold is not None else None
        self._replace(key, new, peer)

    def publish(self, key: ResourceKey, encoded: Iterable[VersionedResource]) -> None:
        """Offer what is not in the store (a zone's insights, :mod:`.insight_sync`) under
        ``key``, to every peer: the entries replace what ``key`` offered (none: withdrawn)."""
        self._replace(key, {(e.type_url, e.name): e for e in encoded}, None)

    def hold(self) -> Callable[[], None]:
        """Keep views from opening until the returned function is called: a source beside the
        store (:meth:`publish`) has not offered its snapshot yet."""
        self._holds += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._holds -= 1
                self._maybe_ready()

        return release

    def _maybe_ready(self) -> None:
        if self._store_synced and not self._holds:
            self._synced.set()

    def _replace(
        self,
        key: ResourceKey,
        new: dict[tuple[str, str], VersionedResource],
        peer: str | None,
    ) -> None:
        old_peer, old = self._sent_as.pop(key, (None, {}))
        for (type_url, name), version in old.items():
            current = new.get((type_url, name))
            if current is not None and current.version == version and peer == old_peer:
                continue  # unchanged: it stays
            self.by_type.get(type_url, {}).pop(name, None)
            self._notify(type_url, name, old_peer)
            if old_peer is not None:
                # Notified while still withheld: that peer never held it.
                hidden = self.withheld[(type_url, old_peer)]
                hidden.discard(name)
                if not hidden:
                    del self.withheld[(type_url, old_peer)]
        if not new:
            return
        for (type_url, name), encoded in new.items():
            if old.get((type_url, name)) == encoded.version and peer == old_peer:
                continue
            if peer is not None:
                self.withheld.setdefault((type_url, peer), set()).add(name)
            self.by_type.setdefault(type_url, {})[name] = encoded
            self._notify(type_url, name, peer)
        self._sent_as[key] = (peer, {k: e.version for k, e in new.items()})

    def _notify(self, type_url: str, name: str, withheld_from: str | None) -> None:
        for view in self._views:
            view._changed(type_url, name, withheld_from)

    @asynccontextmanager
    async def view(self, peer: str = "") -> AsyncIterator[View]:
        """``peer``: who reads it (what is withheld from that peer stays out)."""
        await self._synced.wait()
        view = View(self, peer)
        self._views.add(view)
        try:
            yield view
        finally:
            self._views.discard(view)
