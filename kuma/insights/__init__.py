"""DataplaneInsight: per-stream ADS accounting, flushed to an insight store, read by the API.

See :mod:`.store` for why insights are kept beside the resource store rather than in it, and
:mod:`.flusher` for how writes are batched and rate-limited.
"""

from __future__ import annotations

from .flusher import FlushObserver, InsightFlusher, TokenBucket
from .model import (
    MAX_SUBSCRIPTIONS,
    DataplaneInsight,
    DiscoveryServiceStats,
    DiscoverySubscription,
    SubscriptionStatus,
    insight_json,
    is_online,
)
from .received import ReceivedInsights
from .service import InsightProvider, Insights, dataplane_exists, new_instance_id
from .store import (
    InsightStore,
    Instances,
    ListsInsights,
    MemoryInsightStore,
    NotifiesInsights,
    ReplacesInsights,
    SupportsInsights,
    SupportsInstances,
    insight_store_for,
)
from .tracker import InsightTracker

__all__ = [
    "MAX_SUBSCRIPTIONS",
    "DataplaneInsight",
    "DiscoveryServiceStats",
    "DiscoverySubscription",
    "FlushObserver",
    "InsightFlusher",
    "InsightProvider",
    "InsightStore",
    "InsightTracker",
    "Insights",
    "Instances",
    "ListsInsights",
    "MemoryInsightStore",
    "NotifiesInsights",
    "ReceivedInsights",
    "ReplacesInsights",
    "SubscriptionStatus",
    "SupportsInsights",
    "SupportsInstances",
    "TokenBucket",
    "dataplane_exists",
    "insight_json",
    "insight_store_for",
    "is_online",
    "new_instance_id",
]
