"""Per-proxy records and the stream-facing watch (``kuma.xds.source.ProxyWatch``)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping

import anyio

from kuma.xds.generate.destination import Destination
from kuma.xds.proxy_metadata import NO_METADATA
from kuma.xds.snapshot import VersionedResource

from .assemble import NO_SUBSETS, ProxyResources

_EMPTY: Mapping[str, VersionedResource] = {}


class ProxyRecord:
    """The engine's state for one connected proxy: its desired resources and who watches it."""

    __slots__ = (
        "mesh",
        "metadata",
        "name",
        "node_id",
        "outbound_services",
        "resources",
        "selections",
        "subscribers",
        "subsets",
    )

    def __init__(self, node_id: str, mesh: str, name: str) -> None:
        self.node_id = node_id
        self.mesh = mesh
        self.name = name
        #: None until the proxy's Dataplane exists.
        self.resources: ProxyResources | None = None
        #: Kept by :class:`~.proxy_index.ProxyIndex` (``set_consumed``, ``set_selections``).
        self.outbound_services: frozenset[str] = frozenset()
        self.selections: frozenset[Hashable] = frozenset()
        self.subscribers: list[Subscription] = []
        #: The destinations of each service it reaches through a subset (``Assembly.subsets``).
        self.subsets: Mapping[str, tuple[Destination, ...]] = NO_SUBSETS
        #: What the node of its latest stream said (kuma-dp's DNS port).
        self.metadata = NO_METADATA

    def notify(self, changes: Mapping[str, Iterable[str]]) -> None:
        for subscriber in self.subscribers:
            subscriber.mark(changes)


class Subscription:
    """One stream's view of a proxy. Changes accumulate as names per type (latest content is
    read when the stream gets to it), so a slow stream's backlog never exceeds its config."""

    __slots__ = ("_changes", "_listener", "_waiter", "record")

    def __init__(self, record: ProxyRecord) -> None:
        self.record = record
        self._changes: dict[str, set[str]] = {}
        # Created only while a stream waits: the engine itself never needs an event loop.
        self._waiter: anyio.Event | None = None
        self._listener: Callable[[], None] | None = None

    @property
    def node_id(self) -> str:
        return self.record.node_id

    @property
    def known(self) -> bool:
        return self.record.resources is not None

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        resources = self.record.resources
        if resources is None:
            return _EMPTY
        return resources.get(type_url, _EMPTY)

    @property
    def has_changes(self) -> bool:
        return bool(self._changes)

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        self._listener = listener

    def take_changes(self) -> dict[str, set[str]]:
        changes, self._changes = self._changes, {}
        return changes

    async def wait_for_changes(self) -> None:
        while not self._changes:
            self._waiter = anyio.Event()
            try:
                await self._waiter.wait()
            finally:
                self._waiter = None

    def mark(self, changes: Mapping[str, Iterable[str]]) -> None:
        for type_url, names in changes.items():
            bucket = self._changes.get(type_url)
            if bucket is None:
                bucket = self._changes[type_url] = set()
            bucket.update(names)
        if self._changes:
            if self._waiter is not None:
                self._waiter.set()
            if self._listener is not None:
                self._listener()
