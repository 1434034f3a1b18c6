"""What a ZoneInsight holds: Kuma's ``KDSSubscription`` s (``api/system/v1alpha1/
zone_insight.proto``), one per KDS connection of a zone to a global instance: when it connected
and disconnected, which global instance served it, the zone control plane's version and the
per-type counters of what global sent it.

Kept apart from :mod:`.model` (which holds the resource classes) because these are spec
fragments only; the model imports them. Counters are JSON numbers here (Kuma's protojson
writes uint64 as strings; both parse in kumactl).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import msgspec

from .spec import Spec


class KdsServiceStats(Spec, frozen=True):
    responses_sent: int = 0
    responses_acknowledged: int = 0
    responses_rejected: int = 0


class KdsSubscriptionStatus(Spec, frozen=True):
    last_update_time: datetime | None = None
    total: KdsServiceStats = msgspec.field(default_factory=KdsServiceStats)
    #: Resource type (``Mesh``, ``MeshTimeout``, ...) -> what was sent of it.
    stat: dict[str, KdsServiceStats] = msgspec.field(default_factory=dict)


class KumaCpVersion(Spec, frozen=True):
    version: str = ""
    git_tag: str = msgspec.field(default="", name="gitTag")
    git_commit: str = msgspec.field(default="", name="gitCommit")
    build_date: str = msgspec.field(default="", name="buildDate")
    kuma_cp_global_compatible: bool = msgspec.field(default=False, name="kumaCpGlobalCompatible")


class KdsVersion(Spec, frozen=True):
    kuma_cp: KumaCpVersion | None = msgspec.field(default=None, name="kumaCp")


class KdsSubscription(Spec, frozen=True):
    id: str = ""
    global_instance_id: str = ""
    connect_time: datetime | None = None
    disconnect_time: datetime | None = None
    status: KdsSubscriptionStatus = msgspec.field(default_factory=KdsSubscriptionStatus)
    version: KdsVersion | None = None
    generation: int = 0
    #: The zone control plane's configuration as JSON (here: only what it chose to report).
    config: str = ""
    auth_token_provided: bool = False
    zone_instance_id: str = ""

    @property
    def online(self) -> bool:
        """Kuma's rule: connected and not disconnected."""
        return self.connect_time is not None and self.disconnect_time is None


#: Kuma keeps the last few subscriptions of a zone (``metrics.zone.subscriptionLimit``: 10).
SUBSCRIPTION_LIMIT = 10


def keep_last(subscriptions: Iterable[KdsSubscription]) -> tuple[KdsSubscription, ...]:
    """The newest :data:`SUBSCRIPTION_LIMIT` subscriptions, oldest first, never dropping an
    online one (a zone may be connected to several global instances)."""
    items = list(subscriptions)
    while len(items) > SUBSCRIPTION_LIMIT:
        oldest_offline = next((i for i, s in enumerate(items) if not s.online), None)
        if oldest_offline is None:
            break
        del items[oldest_offline]
    return tuple(items)


def replace_subscription(
    subscriptions: Iterable[KdsSubscription], subscription: KdsSubscription
) -> tuple[KdsSubscription, ...]:
    """``subscriptions`` with ``subscription`` put in place of the one of the same id (or
    appended), bounded by :func:`keep_last`."""
    current = list(subscriptions)
    items = [s for s in current if s.id != subscription.id]
    index = next((i for i, s in enumerate(current) if s.id == subscription.id), len(items))
    items.insert(index, subscription)
    return keep_last(items)


def close_where(
    subscriptions: Iterable[KdsSubscription],
    gone: Callable[[KdsSubscription], bool],
    now: datetime,
) -> tuple[tuple[KdsSubscription, ...], bool]:
    """Online subscriptions for which ``gone`` holds get ``disconnectTime: now``; whether any
    did."""
    changed = False
    out: list[KdsSubscription] = []
    for subscription in subscriptions:
        if subscription.online and gone(subscription):
            subscription = msgspec.structs.replace(subscription, disconnect_time=now)
            changed = True
        out.append(subscription)
    return tuple(out), changed
