"""Numbers out of receipts: latency per (change, affected sidecar), percentiles, deltas."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec


class Summary(msgspec.Struct):
    count: int = 0
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ordered, non-empty sequence."""
    rank = max(1, -(-int(fraction * 1000) * len(ordered) // 1000))
    return ordered[min(len(ordered), rank) - 1]


def summarize(values: Iterable[float]) -> Summary:
    ordered = sorted(values)
    if not ordered:
        return Summary()
    return Summary(
        count=len(ordered),
        p50=percentile(ordered, 0.50),
        p90=percentile(ordered, 0.90),
        p99=percentile(ordered, 0.99),
        max=ordered[-1],
        mean=sum(ordered) / len(ordered),
    )


class Written(msgspec.Struct):
    """One change as the driver made it: probe id, what should arrive, where, when written."""

    probe: int
    type_index: int
    name: str
    affected: tuple[int, ...]
    written_at: float


def latencies(
    changes: Sequence[Written],
    receipts: Mapping[int, Sequence[tuple[int, float]]],
    excused: frozenset[int] = frozenset(),
) -> tuple[list[tuple[int, float]], int]:
    """Propagation latency of every (change, affected sidecar) pair: (sidecar, seconds).

    A sidecar that got a later change of the same resource before (or instead of) this one's
    version holds this change from that moment: coalescing is allowed, so the first receipt of
    this change *or a later one* counts. Receipts before the write (a version-less probe that
    matched an earlier change still in flight) do not count. Returns the latencies, the number
    of pairs never delivered, not counting sidecars in ``excused`` (those that NACKed: a
    rejected cluster is never followed by its endpoints, as with Envoy).
    """
    # (type, name, sidecar) → sorted [(probe id, receipt time)]
    by_key: dict[tuple[int, str, int], list[tuple[int, float]]] = {}
    for change in changes:
        for sidecar, at in receipts.get(change.probe, ()):
            by_key.setdefault((change.type_index, change.name, sidecar), []).append(
                (change.probe, at)
            )
    for found in by_key.values():
        found.sort()
    values: list[tuple[int, float]] = []
    missing = 0
    for change in changes:
        for sidecar in change.affected:
            found = by_key.get((change.type_index, change.name, sidecar), [])
            start = bisect.bisect_left(found, (change.probe, float("-inf")))
            delivered = [at for _, at in found[start:] if at >= change.written_at]
            if not delivered:
                missing += sidecar not in excused
                continue
            values.append((sidecar, min(delivered) - change.written_at))
    return values, missing


def counter_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after}


def merge_counters(parts: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + int(value)
    return total
