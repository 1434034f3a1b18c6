"""Where flushed insights live: a small store of their own, beside the resource store.

Why not a ``DataplaneInsight`` resource in the resource :class:`~kuma.store.Store`:

* every resource write is a watch event for every consumer, the engine included. 10,000
  proxies flushing every 10 s would be ~1,000 events a second through every watch of every
  instance, for data no proxy's configuration depends on. Kept apart, an insight write cannot
  trigger xDS work, by construction rather than by a filter someone could forget;
* the resource stores validate, version (CAS) and, for the directory store, write files a user
  edits: none of that fits counters that change every few seconds;
* the model, codec and three stores are being changed by others; this touches none of them.

An :class:`InsightStore` merges subscriptions into insights (Kuma's ``UpdateSubscription``)
and reads them back synchronously from what it holds locally. :class:`MemoryInsightStore` is
per instance and lost on restart, exactly like the memory store (the directory store uses it
too). A resource store that can persist insights offers its own through
:class:`SupportsInsights`, and :func:`insight_store_for` picks it up: the etcd store keeps them
under ``<prefix>-insights/``, outside the range of every resource watch, merges each instance's
subscriptions by compare-and-swap in transactions of at most 128 keys, and follows the prefix
with a watch of its own so that reads see the other instances' subscriptions
(``plugins/kuma_etcd_store/insights.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from .model import DataplaneInsight, DiscoverySubscription, update_subscription
from .tracker import Clock

#: One subscription to merge into the insight of the Dataplane ``(mesh, name)``.
Update = tuple[str, str, DiscoverySubscription]


class InsightStore(Protocol):
    @property
    def name(self) -> str: ...

    def get(self, mesh: str, name: str) -> DataplaneInsight | None:
        """The insight as this instance last wrote or saw it (no I/O)."""
        ...

    async def upsert(self, updates: Sequence[Update]) -> None:
        """Merge every update into its insight, in order, as one batch (one round trip for a
        remote store). All or nothing is not required: a failed batch is retried whole."""
        ...

    async def delete(self, mesh: str, name: str) -> None:
        """Forget a Dataplane's insight (its Dataplane was deleted)."""
        ...


@runtime_checkable
class NotifiesInsights(Protocol):
    """An insight store that says when an insight changed, whoever wrote it (optional: a
    store shared by instances hears the other instances' flushes; the GUI shows them live)."""

    def on_insight_changed(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``callback(mesh, name)`` (synchronously, cheaply) after each change of that
        Dataplane's insight; returns the function that stops calling it."""
        ...


@runtime_checkable
class ReplacesInsights(InsightStore, Protocol):
    """An insight store that can take a whole insight as another control plane sent it
    (global: a zone's, kuma/insights/received.py), without merging."""

    async def replace(self, mesh: str, name: str, insight: DataplaneInsight) -> None: ...


@runtime_checkable
class ListsInsights(Protocol):
    """An insight store that can say which insights it holds (optional: a zone sends them all
    to global when it connects, kuma/kds/insight_sync.py)."""

    def keys(self) -> Iterator[tuple[str, str]]:
        """``(mesh, name)`` of every insight held locally (no I/O)."""
        ...


@runtime_checkable
class SupportsInsights(Protocol):
    """A resource store that can also keep insights (persisted, shared by instances)."""

    def insight_store(self) -> InsightStore: ...


class Instances(Protocol):
    """Which control-plane instances sharing a store are alive."""

    async def keep_alive(self, instance_id: str) -> None:
        """Declare ``instance_id`` alive until cancelled."""
        ...

    async def live(self) -> frozenset[str]: ...


@runtime_checkable
class SupportsInstances(Protocol):
    """A resource store shared by several instances that can tell which of them are alive."""

    def instances(self) -> Instances: ...


class MemoryInsightStore:
    """Insights in a dict: per control-plane instance, gone on restart."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._insights: dict[tuple[str, str], DataplaneInsight] = {}
        self._listeners: list[Callable[[str, str], None]] = []
        #: Batches written (for tests and measurements: one call of ``upsert`` each).
        self.writes = 0

    @property
    def name(self) -> str:
        return "memory"

    def get(self, mesh: str, name: str) -> DataplaneInsight | None:
        return self._insights.get((mesh, name))

    async def upsert(self, updates: Sequence[Update]) -> None:
        now = self._clock()
        insights = self._insights
        for mesh, name, subscription in updates:
            key = (mesh, name)
            insights[key] = update_subscription(insights.get(key), subscription, now=now)
        self.writes += 1
        if self._listeners:
            for key in dict.fromkeys((mesh, name) for mesh, name, _ in updates):
                self._changed(*key)

    async def delete(self, mesh: str, name: str) -> None:
        if self._insights.pop((mesh, name), None) is not None:
            self._changed(mesh, name)

    async def replace(self, mesh: str, name: str, insight: DataplaneInsight) -> None:
        self._insights[(mesh, name)] = insight
        self._changed(mesh, name)

    def keys(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._insights))

    def on_insight_changed(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        listeners = self._listeners
        listeners.append(callback)
        return lambda: listeners.remove(callback) if callback in listeners else None

    def _changed(self, mesh: str, name: str) -> None:
        for listener in tuple(self._listeners):
            listener(mesh, name)

    def __len__(self) -> int:
        return len(self._insights)


def insight_store_for(store: object, *, clock: Clock = time.time) -> InsightStore:
    """The resource store's own insight storage when it has one, else a memory one."""
    if isinstance(store, SupportsInsights):
        return store.insight_store()
    return MemoryInsightStore(clock=clock)
