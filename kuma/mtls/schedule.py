"""One timer heap for every certificate's rotation (no per-proxy timers, no polling).

Entries are (due time, sequence, key, token); rescheduling a key just pushes a new entry with a
new token, and stale entries are skipped when they surface (lazy deletion), so every operation
is O(log n) and the heap never needs a scan.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Hashable

#: Kuma rotates at 80 % of a certificate's lifetime; rotations are spread over the 10 % before
#: that, so certificates issued together (a restart, a CA change) rotate over a window instead
#: of in the same second.
ROTATE_AT = 0.8
JITTER = 0.1


def rotation_time(
    issued_at: float, lifetime: float, rng: random.Random, jitter: float = JITTER
) -> float:
    """When a certificate issued at ``issued_at`` for ``lifetime`` seconds should be replaced:
    uniformly in [70 %, 80 %] of its lifetime."""
    return issued_at + lifetime * (ROTATE_AT - jitter * rng.random())


class RotationSchedule:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable, int]] = []
        self._tokens: dict[Hashable, int] = {}
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._tokens)

    def schedule(self, key: Hashable, due: float) -> None:
        """(Re)schedule ``key`` at ``due``, replacing any earlier schedule of it."""
        token = next(self._sequence)
        self._tokens[key] = token
        heapq.heappush(self._heap, (due, token, key, token))

    def cancel(self, key: Hashable) -> None:
        self._tokens.pop(key, None)

    def next_due(self) -> float | None:
        """When the earliest live entry is due; None when nothing is scheduled."""
        heap = self._heap
        while heap and self._tokens.get(heap[0][2]) != heap[0][3]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float, limit: int | None = None) -> list[Hashable]:
        """The keys due at ``now`` (at most ``limit``), earliest first, unscheduled."""
        due: list[Hashable] = []
        heap = self._heap
        while heap and (limit is None or len(due) < limit):
            when, _, key, token = heap[0]
            if self._tokens.get(key) != token:
                heapq.heappop(heap)
                continue
            if when > now:
                break
            heapq.heappop(heap)
            del self._tokens[key]
            due.append(key)
        # Stale entries pile up under churn: rebuild when they outnumber the live ones.
        if len(heap) > 64 and len(heap) > 2 * len(self._tokens):
            self._heap = [entry for entry in heap if self._tokens.get(entry[2]) == entry[3]]
            heapq.heapify(self._heap)
        return due
