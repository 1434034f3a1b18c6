"""The live propagation view: recent store changes and how long each took to reach its proxies.

The measurements are the engine's own (the same numbers as ``kuma_xds_propagation_seconds``):
the time from a store event reaching the engine to the first response written to a proxy it
changed. Each measurement arrives as ``(node id, seconds)`` when that response is written.

A measurement names its proxy but not its change, so it is attributed here: the change it
belongs to arrived ``seconds`` before now, and it goes to the recorded change whose arrival is
nearest to that moment (within :data:`MATCH_WINDOW`). Changes the engine coalesced into one
batch are measured from the oldest of them, so the others of that batch show no proxies of
their own; a measurement with no change near enough (a proxy's first connection, a change made
before the page's history) counts only in the totals.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from kuma.store import ResourceEvent

from .feed import LiveFeed

#: Changes kept (newest last).
CHANGES_KEPT = 50
#: Proxies listed per change (the slowest ones); every proxy still counts in the numbers.
PROXIES_LISTED = 5
#: How far (seconds) a measurement's implied change time may be from a recorded change.
MATCH_WINDOW = 0.5
#: Recent measurements kept for the overall percentiles.
SAMPLES_KEPT = 5000


class _Change:
    __slots__ = ("arrived", "id", "key", "latencies", "operation", "slowest", "wall")

    def __init__(self, change_id: int, event: ResourceEvent, arrived: float, wall: float) -> None:
        self.id = change_id
        key = event.key
        self.key = (key.type, key.mesh, key.name)
        self.operation = event.operation.value
        self.arrived = arrived
        self.wall = wall
        self.latencies: list[float] = []
        #: (seconds, node id) of the slowest proxies, slowest first.
        self.slowest: list[tuple[float, str]] = []

    def add(self, node_id: str, seconds: float) -> None:
        self.latencies.append(seconds)
        slowest = self.slowest
        # Called once per proxy a change reached (10,000 times in a fan-out): most are not
        # among the slowest, which the full list already tells.
        if len(slowest) >= PROXIES_LISTED and (seconds, node_id) <= slowest[-1]:
            return
        slowest.append((seconds, node_id))
        slowest.sort(reverse=True)
        del slowest[PROXIES_LISTED:]

    def document(self) -> dict[str, Any]:
        type_, mesh, name = self.key
        latencies = self.latencies
        return {
            "id": self.id,
            "time": self.wall,
            "operation": self.operation,
            "type": type_,
            "mesh": mesh,
            "name": name,
            "proxies": len(latencies),
            "median": statistics.median(latencies) if latencies else None,
            "max": max(latencies) if latencies else None,
            "slowest": [{"proxy": node, "seconds": s} for s, node in self.slowest],
        }


def _percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class PropagationLog:
    def __init__(
        self,
        feed: LiveFeed,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._feed = feed
        self._clock = clock
        self._wall = wall_clock
        self._changes: deque[_Change] = deque(maxlen=CHANGES_KEPT)
        self._ids = itertools.count(1)
        self._samples: deque[float] = deque(maxlen=SAMPLES_KEPT)
        self.measured = 0
        self.unmatched = 0

    def on_store_change(self, event: ResourceEvent) -> None:
        change = _Change(next(self._ids), event, self._clock(), self._wall())
        self._changes.append(change)
        self._feed.publish({"kind": "propagation", "name": str(change.id)})

    def on_propagation(self, node_id: str, seconds: float) -> None:
        """One proxy reached ``seconds`` after its change reached the engine."""
        self.measured += 1
        self._samples.append(seconds)
        change = self._match(self._clock() - seconds)
        if change is None:
            self.unmatched += 1
            return
        change.add(node_id, seconds)
        if self._feed.subscribers:
            self._feed.publish({"kind": "propagation", "name": str(change.id)})

    def _match(self, moment: float) -> _Change | None:
        """The recorded change that arrived nearest to ``moment`` (the older on a tie), if
        within :data:`MATCH_WINDOW`. From the newest back: a measurement is nearly always of
        one of the last changes, and it runs once per proxy a change reached."""
        best, best_gap = None, MATCH_WINDOW
        for change in reversed(self._changes):
            gap = abs(change.arrived - moment)
            if gap <= best_gap:
                best, best_gap = change, gap
            if change.arrived < moment:
                break  # the older ones are farther still
        return best

    def document(self) -> dict[str, Any]:
        ordered = sorted(self._samples)
        return {
            "changes": [c.document() for c in reversed(self._changes)],
            "measured": self.measured,
            "unmatched": self.unmatched,
            "recent": {
                "samples": len(ordered),
                "p50": _percentile(ordered, 0.5),
                "p99": _percentile(ordered, 0.99),
                "max": ordered[-1] if ordered else None,
            },
        }
