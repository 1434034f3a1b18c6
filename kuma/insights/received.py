"""Insights another control plane sent (on global: each zone's, over KDS, kuma/kds/insight_sync.py).

A zone's insight is that zone's word on its proxy, whole: global neither merges subscriptions
into it (:func:`~.model.update_subscription` would close the zone's instances' live
subscriptions as another instance's) nor flushes it. Kept per global instance, in memory: the
instance that holds the zone's stream has them, and a restarted global is sent them again (its
receiver declares holding none).
"""

from __future__ import annotations

from .model import DataplaneInsight


class ReceivedInsights:
    def __init__(self) -> None:
        #: (mesh, name as global stores the proxy) -> (zone, version, insight).
        self._by_key: dict[tuple[str, str], tuple[str, str, DataplaneInsight]] = {}

    def get(self, mesh: str, name: str) -> DataplaneInsight | None:
        found = self._by_key.get((mesh, name))
        return found[2] if found is not None else None

    def put(self, zone: str, mesh: str, name: str, version: str, insight: DataplaneInsight) -> None:
        self._by_key[(mesh, name)] = (zone, version, insight)

    def remove(self, mesh: str, name: str, *, zone: str | None = None) -> None:
        """Forget it (only if ``zone`` sent it, when given)."""
        found = self._by_key.get((mesh, name))
        if found is not None and (zone is None or found[0] == zone):
            del self._by_key[(mesh, name)]

    def held(self, zone: str) -> dict[tuple[str, str], str]:
        """(mesh, name) -> version of what ``zone`` sent."""
        return {key: version for key, (owner, version, _) in self._by_key.items() if owner == zone}

    def __len__(self) -> int:
        return len(self._by_key)
