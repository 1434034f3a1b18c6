"""Dataplane insights for ``dataplanes+insights``: where they come from and the overview shape.

The API does not build insights; whatever tracks proxy connections does, and hands the API an
:class:`InsightProvider`. Until one is wired in, :class:`NoInsights` answers with Kuma's empty
insight, so the endpoints (and ``kumactl inspect dataplanes``) work and show proxies Offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kuma.resources import StoredResource, to_document


class InsightProvider(Protocol):
    def insight(self, mesh: str, name: str) -> Mapping[str, Any] | None:
        """The DataplaneInsight document of a Dataplane (``api/mesh/v1alpha1/
        dataplane_insight.proto`` in JSON: ``subscriptions``, ``mTLS``, ...), or None."""
        ...


class NoInsights:
    """The default provider: no proxy has ever connected."""

    def insight(self, mesh: str, name: str) -> Mapping[str, Any] | None:
        return {}


def overview(stored: StoredResource, insights: InsightProvider) -> dict[str, Any]:
    """Kuma's DataplaneOverview: the Dataplane's meta, its spec under ``dataplane`` and its
    insight under ``dataplaneInsight`` (``{}`` when there is none)."""
    document = to_document(stored.resource, stored.meta)
    spec = {
        key: value
        for key, value in document.items()
        if key not in ("type", "mesh", "name", "creationTime", "modificationTime")
    }
    resource = stored.resource
    insight = insights.insight(resource.mesh_name, resource.name)
    return {
        "type": "DataplaneOverview",
        "mesh": document["mesh"],
        "name": document["name"],
        "creationTime": document["creationTime"],
        "modificationTime": document["modificationTime"],
        "dataplane": spec,
        "dataplaneInsight": dict(insight) if insight is not None else {},
    }
