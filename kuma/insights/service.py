"""The insights component: what the runtime starts and what the REST API reads.

:class:`Insights` ties the :class:`~.tracker.InsightTracker` (a stream observer), the
:class:`~.store.InsightStore` and the :class:`~.flusher.InsightFlusher` together, and answers
:class:`InsightProvider` reads in Kuma's JSON shape: the stored insight with this instance's
live subscriptions laid over it, so a read is exact for proxies connected here and as of the
last flush for proxies connected to other instances.

Insights follow their Dataplanes: when a Dataplane is deleted its insight is deleted (Kuma's
owner reference). If the proxy is still connected then, the deletion is repeated once its
streams are closed and flushed, so nothing lingers for a Dataplane that no longer exists.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio

from kuma.resources import Dataplane, ResourceKey, ZoneEgress, ZoneIngress
from kuma.store import NotFoundError, Operation, ResourceEvent, Store, StoreError

from .flusher import FlushObserver, InsightFlusher
from .model import DataplaneInsight, insight_json, merge_live
from .received import ReceivedInsights
from .store import InsightStore
from .tracker import Clock, InsightTracker

log = logging.getLogger("kuma.insights")


#: ``(mesh, name)`` -> whether that Dataplane exists in the resource store.
DataplaneExists = Callable[[str, str], Awaitable[bool]]


async def dataplane_exists(store: Store, mesh: str, name: str) -> bool:
    """Whether the proxy's resource exists: its Dataplane, or for a zone proxy (mesh ``""``,
    node id ``.<name>``) its ZoneIngress or ZoneEgress. A store failure counts as yes: nothing
    is dropped then."""
    types = (Dataplane.TYPE,) if mesh else (ZoneIngress.TYPE, ZoneEgress.TYPE)
    for type in types:
        try:
            await store.get(ResourceKey(type, mesh, name))
        except NotFoundError:
            continue
        except StoreError:
            return True
        return True
    return False


class InsightProvider(Protocol):
    def insight(self, mesh: str, name: str) -> dict[str, Any] | None:
        """Kuma's JSON of the Dataplane's insight (``{"subscriptions": [...]}``), or None when
        the proxy never connected."""
        ...


def new_instance_id() -> str:
    """Kuma's form: the host name and a short random suffix (unique per process)."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:4]}"


class Insights:
    def __init__(
        self,
        store: InsightStore,
        *,
        flush_interval: float,
        instance_id: str | None = None,
        wall_clock: Clock = time.time,
        observer: FlushObserver | None = None,
        max_rate: float = 2000.0,
        batch_size: int = 500,
        dataplane_exists: DataplaneExists | None = None,
    ) -> None:
        self.instance_id = instance_id or new_instance_id()
        self._dataplane_exists = dataplane_exists
        #: Proxies whose streams closed: once flushed, their insight goes if no Dataplane
        #: exists (a stream for a made-up node id leaves nothing behind).
        self._closed: set[tuple[str, str]] = set()
        self.store = store
        #: Insights of other control planes' proxies (global: the zones'), read when the store
        #: has none: a zone's Dataplane never has a stream here.
        self.received = ReceivedInsights(store)
        self.tracker = InsightTracker(self.instance_id, clock=wall_clock)
        self.flusher = InsightFlusher(
            self.tracker,
            store,
            interval=flush_interval,
            observer=observer,
            max_rate=max_rate,
            batch_size=batch_size,
        )
        self._deleted: list[tuple[str, str]] = []
        #: Deleted while connected: delete again once no stream of theirs is tracked.
        self._orphans: set[tuple[str, str]] = set()
        self._wake: anyio.Event | None = None

    # --- InsightProvider ----------------------------------------------------------------------

    def insight(self, mesh: str, name: str) -> dict[str, Any] | None:
        merged = self.current(mesh, name)
        return insight_json(merged) if merged is not None else None

    def current(self, mesh: str, name: str) -> DataplaneInsight | None:
        """The stored insight with this instance's live subscriptions laid over it."""
        stored = self.store.get(mesh, name) or self.received.get(mesh, name)
        return merge_live(stored, self.tracker.live(f"{mesh}.{name}"))

    # --- store events (fed by the runtime's watch) ----------------------------------------------

    def on_store_event(self, event: ResourceEvent) -> None:
        resource = event.resource
        if not isinstance(resource, Dataplane | ZoneIngress | ZoneEgress):
            return
        # A zone proxy's insight is under the mesh "" (its node id is ``.<name>``).
        key = (resource.mesh_name, resource.name)
        if event.operation is Operation.DELETE:
            self._deleted.append(key)
            if self._wake is not None:
                self._wake.set()
        else:
            self._orphans.discard(key)

    # --- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Flush and prune until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.flusher.run)
            while True:
                self._wake = anyio.Event()
                if not self._deleted:
                    # Orphans are rechecked every interval: their streams close in their own time.
                    with anyio.move_on_after(self.flusher.interval):
                        await self._wake.wait()
                await self.prune()

    async def prune(self) -> None:
        """Delete the insights of deleted Dataplanes (and of orphans no longer connected), and
        those of proxies whose Dataplane never existed once their streams are gone."""
        if self._dataplane_exists is not None:
            for node_id in self.tracker.take_closed_nodes():
                mesh, _, name = node_id.partition(".")
                self._closed.add((mesh, name))
            for key in [k for k in self._closed if not self.tracker.tracks(f"{k[0]}.{k[1]}")]:
                self._closed.discard(key)
                if self.store.get(*key) is not None and not await self._dataplane_exists(*key):
                    await self._delete(key)
        deleted, self._deleted = self._deleted, []
        for key in deleted:
            if self.tracker.tracks(f"{key[0]}.{key[1]}"):
                self._orphans.add(key)
            await self._delete(key)
        for key in [k for k in self._orphans if not self.tracker.tracks(f"{k[0]}.{k[1]}")]:
            self._orphans.discard(key)
            await self._delete(key)

    async def _delete(self, key: tuple[str, str]) -> None:
        self.received.forget(*key)
        try:
            await self.store.delete(*key)
        except Exception:
            log.exception("could not delete the insight of Dataplane %s/%s", *key)
