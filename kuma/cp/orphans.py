"""Orphaned registrations: Dataplanes a sidecar registered whose proxy is gone everywhere.

A registered Dataplane (label ``kuma.io/dp-registration``, see :mod:`.registration`) is
deleted by the instance that held its stream, some time after the stream ended. If that
instance dies first (``kill -9``, a crashed host) nobody does (Kuma's issue #6654). The
:class:`OrphanCollector` of every instance looks at every registered Dataplane each
``interval``: the proxy is *connected* when its insight (the shared one, with this instance's
live subscriptions laid over it) has an online subscription held by a live instance. Which
instances are alive comes from the store when it is shared (etcd: a key per instance on a
lease, ``kuma_etcd_store/instances.py``); a store of one instance has only this one. A
subscription of a dead instance looks online forever and so counts for nothing.

A Dataplane not connected for ``age`` (``runtime.universal.dataplaneCleanupAge``, measured
from when this instance first saw it so) is deleted with the version read when it was
judged (compare-and-swap): a proxy that registered again meanwhile, or anyone's edit, wins.
Dataplanes that people defined (no registration label) are never touched. Several instances
collecting the same orphan is harmless: one delete succeeds, the others find it gone or
changed. Global collects nothing (as Kuma's gc): its Dataplanes are the zones' copies, whose
streams are the zones' (their subscriptions name zone instances, never a live global one), and
only a zone may delete them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio

from kuma.insights import DataplaneInsight, Instances
from kuma.resources import Dataplane, ResourceKey
from kuma.store import ConflictError, NotFoundError, Store, StoreError

from .logs import fields
from .registration import is_registered

log = logging.getLogger("kuma.cp.orphans")

#: The current insight of a Dataplane ``(mesh, name)`` (stored, with local live subscriptions).
InsightOf = Callable[[str, str], DataplaneInsight | None]

_PAGE = 500


class OrphanCollector:
    def __init__(
        self,
        store: Store,
        insight_of: InsightOf,
        instance_id: str,
        *,
        age: float,
        instances: Instances | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ) -> None:
        """``enabled``: collect at all (False on global; live instances are still kept)."""
        self._store = store
        self.enabled = enabled
        self._insight_of = insight_of
        self._instance_id = instance_id
        self._instances = instances
        self.age = age
        self.interval = interval if interval is not None else max(0.5, min(age / 4, 30.0))
        self._clock = clock
        #: Registered Dataplanes seen without a stream, and since when (this instance's clock).
        self._since: dict[ResourceKey, float] = {}

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            if self._instances is not None:
                tg.start_soon(self._instances.keep_alive, self._instance_id)
            while True:
                await anyio.sleep(self.interval)
                try:
                    await self.collect()
                except StoreError as exc:
                    log.warning("cannot look for orphaned registrations: %s", exc)
                    continue
                log.debug(
                    "orphan collection pass: %d registrations without a stream", len(self._since)
                )

    async def live_instances(self) -> frozenset[str]:
        if self._instances is None:
            return frozenset({self._instance_id})
        return (await self._instances.live()) | {self._instance_id}

    async def collect(self) -> int:
        """One pass; the number of Dataplanes deleted."""
        if not self.enabled:
            return 0
        live = await self.live_instances()
        now = self._clock()
        seen: set[ResourceKey] = set()
        doomed: list[tuple[ResourceKey, str]] = []
        offset: str | None = None
        while True:
            page = await self._store.list(Dataplane.TYPE, limit=_PAGE, offset=offset)
            for item in page.items:
                resource = item.resource
                if not isinstance(resource, Dataplane) or not is_registered(resource):
                    continue
                key = item.key
                if self._connected(key, live):
                    continue
                seen.add(key)
                since = self._since.setdefault(key, now)
                if now - since >= self.age:
                    doomed.append((key, item.meta.version))
            offset = page.next_offset
            if offset is None:
                break
        self._since = {k: t for k, t in self._since.items() if k in seen}
        deleted = 0
        for key, version in doomed:
            deleted += await self._delete(key, version)
        return deleted

    async def connected_elsewhere(self, mesh: str, name: str) -> str | None:
        """The id of another live instance holding an online subscription of the proxy."""
        insight = self._insight_of(mesh, name)
        if insight is None:
            return None
        others = [
            s.control_plane_instance_id
            for s in insight.subscriptions
            if s.online and s.control_plane_instance_id != self._instance_id
        ]
        if not others:
            return None
        live = await self.live_instances()
        return next((other for other in others if other in live), None)

    def _connected(self, key: ResourceKey, live: frozenset[str]) -> bool:
        insight = self._insight_of(key.mesh, key.name)
        if insight is None:
            return False
        return any(s.online and s.control_plane_instance_id in live for s in insight.subscriptions)

    async def _delete(self, key: ResourceKey, version: str) -> int:
        where = fields(mesh=key.mesh, name=key.name, age=self.age)
        self._since.pop(key, None)
        try:
            await self._store.delete(key, version=version)
        except (NotFoundError, ConflictError):
            return 0  # gone, registered again, or edited since: not an orphan any more
        except StoreError as exc:
            log.warning("cannot delete an orphaned registration: %s", exc, extra=where)
            return 0
        log.info("deleted a registered Dataplane no instance has had a stream of", extra=where)
        return 1
