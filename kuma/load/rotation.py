"""The rotation wave: every workload certificate of a mesh with mTLS is replaced once.

kuma-cp rotates each certificate at a uniformly jittered 70-80 % of its lifetime
(``kuma/mtls/schedule.py``), so certificates issued together (10,000 proxies connecting within
seconds) are replaced spread over a tenth of their lifetime, not in the same second. This
scenario waits for that wave with a short ``--mtls-expiration`` and measures it from the
sidecars' side: when each sidecar received its first certificate (the harness watches the
identity Secret from before the first connection) and its replacement, so the rotation delay of
every sidecar as a fraction of the lifetime shows the jitter, and how many replacements arrived
in the busiest second shows the spread. Targeted changes run while the wave is under way, their
latency compared with the plain targeted scenario.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from kuma.resources.mtls import parse_kuma_duration
from kuma.xds.generate.tls import mesh_ca_secret_name

from .reference import Prediction
from .scenarios import _sequential_changes, _verify
from .session import Harness
from .stats import counter_delta, summarize
from .wire import SDS

POLL = 0.5


def _percents(fractions: list[float]) -> dict[str, float] | None:
    if not fractions:
        return None
    summary = summarize(fractions)
    assert summary.p50 is not None
    assert summary.p99 is not None
    assert summary.max is not None
    return {
        "min": round(100 * min(fractions), 1),
        "p50": round(100 * summary.p50, 1),
        "p99": round(100 * summary.p99, 1),
        "max": round(100 * summary.max, 1),
    }


async def _rotated(h: Harness, since: float) -> int:
    """Sidecars that received a new identity Secret after ``since``."""
    assert h.pool is not None
    assert h.identity_probe is not None
    replies = await h.pool.all("peek", [(h.identity_probe, since)])
    return sum(counts[h.identity_probe] for counts, _ in replies)


async def rotation_wave(h: Harness, *, changes_during: int = 20) -> dict[str, Any]:
    """Wait (at most 1.2 lifetimes) until every sidecar got its certificate replaced."""
    lifetime = parse_kuma_duration(h.plan.spec.mtls_expiration or "24h") or 86400.0
    if h.identity_probe is None:
        raise ValueError("the rotation scenario needs --mtls")
    # The mesh's CA Secret must not travel with the rotations: it did not change.
    ca = Prediction(SDS, mesh_ca_secret_name(h.plan.spec.mesh), "", ())
    [ca_probe] = await h.register([ca])
    started = time.time()
    deadline = time.monotonic() + 1.2 * lifetime
    before = (await h.status())["counters"]
    cpu_started = h.cp_cpu()
    cpu_first: float | None = None
    during: list[Any] = []
    proxies = h.plan.instances_of(1) if h.plan.spec.services > 1 else [0]
    seen = 0
    while time.monotonic() < deadline:
        seen = await _rotated(h, started)
        if seen and cpu_first is None:
            cpu_first = h.cp_cpu()
        if seen >= h.count:
            break
        if seen and len(during) < changes_during:
            # One targeted change at a time while certificates are being replaced.
            proxy = proxies[len(during) % len(proxies)]
            during.append(await _sequential_changes(h, [proxy], "targeted during rotation"))
        else:
            await asyncio.sleep(POLL)
    cpu_ended = h.cp_cpu()
    delta = counter_delta(before, (await h.status())["counters"])
    found = await h.receipts([h.identity_probe, ca_probe])
    receipts = found[h.identity_probe]
    h.identity_probe = None
    by_sidecar: dict[int, list[float]] = {}
    for index, at in receipts:
        by_sidecar.setdefault(index, []).append(at)
    # A proxy whose tags change gets a new certificate then (its tags are in its SANs): the
    # proxies changed during the wave are left out of the timing.
    changed = {proxies[k % len(proxies)] for k in range(len(during))}
    fractions: list[float] = []
    rotations: list[float] = []
    for index, times in by_sidecar.items():
        times.sort()
        issued = [t for t in times if t < started]
        replaced = [t for t in times if t >= started]
        if issued and replaced and index not in changed:
            rotations.append(replaced[0])
            # From the certificate it replaced (the last one received before the wave).
            fractions.append((replaced[0] - issued[-1]) / lifetime)
    per_second = Counter(int(t) for t in rotations)
    first, last = (min(rotations), max(rotations)) if rotations else (started, started)
    pairs = [pair for result in during for pair in result["_pairs"]]
    return {
        "lifetime_seconds": lifetime,
        "sidecars_rotated": seen,
        "rotations_measured": len(rotations),
        "wave_seconds": round(last - first, 2),
        "wave_started_after_seconds": round(first - started, 2),
        "rotation_at_percent_of_lifetime": _percents(fractions),
        "min_fraction": round(min(fractions), 4) if fractions else None,
        "busiest_second_rotations": max(per_second.values(), default=0),
        "mean_rotations_per_second": round(len(rotations) / max(1.0, last - first), 1),
        "cp_cpu_seconds_wave": round(cpu_ended - (cpu_first or cpu_ended), 3),
        "cp_cpu_seconds_total": round(cpu_ended - cpu_started, 3),
        "cp_cpu_ms_per_rotation": round(
            (cpu_ended - (cpu_first or cpu_ended)) * 1000 / max(1, len(rotations)), 3
        ),
        # A rotation sends the proxy's identity Secret (not the CA's) and no other resource:
        # what else arrived is the targeted changes' endpoints.
        "secrets": delta.get("secrets", 0),
        "ca_secrets_resent": sum(1 for _, at in found[ca_probe] if at >= started),
        "other_resources": delta.get("resources", 0) - delta.get("secrets", 0),
        "targeted_changes_during_wave": len(during),
        "proxies_changed_during_wave": len(changed),
        "targeted_latency_during_wave": summarize(v for _, v in pairs),
        "targeted_undelivered_during_wave": sum(r["undelivered"] for r in during),
        "verify": await _verify(h, "verify"),
        "_pairs": pairs,
    }
