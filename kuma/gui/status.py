"""Whether a proxy is online, cheap enough to ask of 10,000 proxies per page.

Kuma's rule is read off the DataplaneInsight (a subscription connected and not disconnected),
but rendering each insight to answer a yes/no costs tens of microseconds; the overview and the
status filter ask it of every proxy. The same answer, from what is already at hand:

* streams of *this* instance: :class:`~.streams.StreamWatcher` counts them as they open and
  close (it observes every stream from the start, like the insight tracker), so they are exact;
* streams of *other* instances sharing the store: their subscriptions in the insight store, as
  of their last flush. This instance's own stored subscriptions are skipped: the watcher knows
  them better (a closed stream may not be flushed yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kuma.insights import Insights

from .streams import StreamWatcher


class ProxyStatus:
    def __init__(self, insights: Insights, streams: StreamWatcher) -> None:
        self._insights = insights
        self._streams = streams

    def online(self, mesh: str, name: str) -> bool:
        if self._streams.is_open(f"{mesh}.{name}"):
            return True
        stored = self._insights.store.get(mesh, name)
        if stored is None:
            return False
        own = self._insights.instance_id
        return any(
            s.disconnect_time is None and s.control_plane_instance_id != own
            for s in stored.subscriptions
        )

    def insight(self, mesh: str, name: str) -> Mapping[str, Any] | None:
        """Kuma's JSON of the proxy's insight (for the rows of one page and the detail)."""
        return self._insights.insight(mesh, name)
