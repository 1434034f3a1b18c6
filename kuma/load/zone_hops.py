"""Where a cross-zone change spends its time, read from the three kuma-cps' own log lines
(text format: an ISO timestamp with milliseconds first). For each change, written at ``w`` in
zone-2's store, the first line after ``w`` (and before the next change) of:

- ``ingress_written``: zone-2's ingress writer stored the new list (``updated ZoneIngress
  available services``): zone-2's store watch, engine and the write (at once when the
  writer is idle);
- ``global_received``: global's receiver took zone-2's changed entries (``KDS: zone zone-2
  sent ... ZoneIngressService``): zone-2's watch of its own write, its outbox, KDS up;
- ``zone_1_received``: zone-1's receiver took them from global (``KDS: global sent ...
  ZoneIngressService``): global's store write, its watch, outbox, KDS down.

From ``zone_1_received`` to the first zone-1 sidecar's receipt is zone-1's store write, watch,
engine and ADS. Times are seconds since the write; a milestone whose line is missing (the
process's kept output is bounded) is left out.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import Any

INGRESS_WRITTEN = "updated ZoneIngress available services"


def _received(peer: str) -> str:
    return f"KDS: {peer} sent "


def line_times(output: str, marker: str, kind: str = "") -> list[float]:
    """Wall-clock times of the lines carrying ``marker`` (and ``kind``), in order."""
    found = []
    for line in output.splitlines():
        if marker in line and kind in line:
            stamp, _, _ = line.partition("\t")
            try:
                found.append(datetime.fromisoformat(stamp).timestamp())
            except ValueError:
                continue
    return found


def _first_after(times: Sequence[float], start: float, end: float) -> float | None:
    return next((t for t in times if start <= t < end), None)


def hops(
    written: Sequence[float],
    first_receipts: Sequence[float | None],
    *,
    zone_2: str,
    global_: str,
    zone_1: str,
) -> dict[str, Any]:
    """Median seconds from the write to each milestone, over the changes ``written`` (write
    times, in order), from the logs of zone-2, global and zone-1; ``first_receipts``: each
    change's first zone-1 sidecar receipt (absolute time)."""
    marks = {
        "ingress_written": line_times(zone_2, INGRESS_WRITTEN),
        "global_received": line_times(global_, _received("zone zone-2"), "ZoneIngressService"),
        "zone_1_received": line_times(zone_1, _received("global"), "ZoneIngressService"),
    }
    out: dict[str, Any] = {}
    bounds = [*written[1:], float("inf")]
    for name, times in marks.items():
        values = [
            at - start
            for start, end in zip(written, bounds, strict=True)
            if (at := _first_after(times, start, end)) is not None
        ]
        out[name] = _median_ms(values)
    out["first_zone_1_sidecar"] = _median_ms(
        [at - start for start, at in zip(written, first_receipts, strict=True) if at is not None]
    )
    return out


def _median_ms(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1000, 1) if values else None
