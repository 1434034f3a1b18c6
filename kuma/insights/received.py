"""Insights another control plane sent (on global: each zone's, over KDS, kuma/kds/insight_sync.py).

A zone's insight is that zone's word on its proxy, whole: global neither merges subscriptions
into it (:func:`~.model.update_subscription` would close the zone's instances' live
subscriptions as another instance's) nor flushes it. It is written whole into the insight
store when the store can take it (:class:`~.store.ReplacesInsights`: memory, etcd), so every
global instance sharing an etcd store reads it and its changes are heard like any insight's;
otherwise it is kept here. What each zone sent (names and versions) is kept here by the
instance holding the zone's stream, so a reconnect declares what global holds; a restarted
global holds nothing and is sent everything again.
"""

from __future__ import annotations

from .model import DataplaneInsight
from .store import InsightStore, ReplacesInsights


class ReceivedInsights:
    def __init__(self, store: InsightStore | None = None) -> None:
        self._store: ReplacesInsights | None = None
        if isinstance(store, ReplacesInsights):
            self._store = store
        #: (mesh, name as global stores the proxy) -> (zone, version, insight unless stored).
        self._by_key: dict[tuple[str, str], tuple[str, str, DataplaneInsight | None]] = {}

    def get(self, mesh: str, name: str) -> DataplaneInsight | None:
        """The insight when it is kept here (not in the store)."""
        found = self._by_key.get((mesh, name))
        return found[2] if found is not None else None

    async def put(
        self, zone: str, mesh: str, name: str, version: str, insight: DataplaneInsight
    ) -> None:
        if self._store is not None:
            await self._store.replace(mesh, name, insight)
            self._by_key[(mesh, name)] = (zone, version, None)
        else:
            self._by_key[(mesh, name)] = (zone, version, insight)

    async def remove(self, zone: str, mesh: str, name: str) -> None:
        """``zone`` withdrew it (nothing happens for another zone's)."""
        found = self._by_key.get((mesh, name))
        if found is None or found[0] != zone:
            return
        if self._store is not None:
            await self._store.delete(mesh, name)
        del self._by_key[(mesh, name)]

    def forget(self, mesh: str, name: str) -> None:
        """Its proxy is gone on global (the store's copy is deleted by the caller)."""
        self._by_key.pop((mesh, name), None)

    def held(self, zone: str) -> dict[tuple[str, str], str]:
        """(mesh, name) -> version of what ``zone`` sent."""
        return {key: version for key, (owner, version, _) in self._by_key.items() if owner == zone}

    def __len__(self) -> int:
        return len(self._by_key)
