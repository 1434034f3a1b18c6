"""The scenarios. Each takes a set-up :class:`~.session.Harness` whose sidecars converged
(except :func:`initial_convergence`, which connects them) and returns a JSON-able dict.

Times are wall clock on one machine (``time.time()``): the driver records when it wrote, the
workers when a sidecar received. CPU is the control plane's user + system time from psutil.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from .connect_phases import CpuSampler, storm_report
from .mesh import churn_proxies
from .reference import Prediction
from .session import Harness
from .stats import Written, counter_delta, summarize

#: Seconds after the last receipt for ACKs to reach the control plane before CPU is read.
ACK_GRACE = 0.2


def _curve(events: list[tuple[float, int]], origin: float, points: int = 300) -> list[list[float]]:
    """(seconds since origin, sidecars converged) downsampled to at most ``points``."""
    times = sorted(t for t, _ in events)
    step = max(1, len(times) // points)
    curve = [[round(t - origin, 4), k + 1] for k, t in enumerate(times) if k % step == 0]
    if times and curve[-1][1] != len(times):
        curve.append([round(times[-1] - origin, 4), len(times)])
    return curve


def _per_change(delta: dict[str, int], changes: int) -> dict[str, float]:
    keys = ("responses", "resources", "removed", "bytes", "acks", "nacks")
    return {k: round(delta.get(k, 0) / max(1, changes), 2) for k in keys}


async def _mismatches(h: Harness) -> int:
    assert h.pool is not None
    return sum(len(part) for part in await h.pool.all("mismatches"))


#: Windows of the control plane's CPU after convergence (seconds each), and the share of one
#: core under which a window counts as idle.
TAIL_WINDOW = 0.25
IDLE_SHARE = 0.1


def busy_after(windows: list[float], offset: float, window: float = TAIL_WINDOW) -> float | None:
    """Seconds from the last sidecar's convergence until the control plane went idle for the
    rest of the tail: the end of the last window that used ``IDLE_SHARE`` of a core or more
    (``offset``: seconds from that convergence to the first window's start). ``None`` when even
    the last window was busy: the backlog outlasted the tail."""
    busy = [k for k, share in enumerate(windows) if share >= IDLE_SHARE]
    if not busy:
        return round(max(0.0, offset), 3)
    if busy[-1] == len(windows) - 1:
        return None
    return round(offset + (busy[-1] + 1) * window, 3)


async def _cpu_tail(h: Harness, seconds: float) -> list[float]:
    """The control plane's CPU, as shares of one core, in ``TAIL_WINDOW`` windows."""
    shares: list[float] = []
    cpu, last = h.cp_cpu(), time.monotonic()
    began = last
    for k in range(max(1, round(seconds / TAIL_WINDOW))):
        await asyncio.sleep(max(0.0, began + (k + 1) * TAIL_WINDOW - time.monotonic()))
        now_cpu, now = h.cp_cpu(), time.monotonic()
        shares.append(round((now_cpu - cpu) / max(1e-6, now - last), 3))
        cpu, last = now_cpu, now
    return shares


async def initial_convergence(
    h: Harness, *, idle_seconds: float = 10.0, tail_seconds: float = 1.0
) -> dict[str, Any]:
    """Connect every sidecar and wait until each holds its configuration. Then, for
    ``tail_seconds``, the control plane's CPU in ``TAIL_WINDOW`` windows: work still queued
    when the last sidecar converged (the issue's "idle within 1 s") shows there."""
    assert h.pool is not None
    rss_before = h.cp_rss()
    cpu_before = h.cp_cpu()
    harness_cpu_before, harness_rss_before = h.harness_usage()
    counters_before = (await h.status())["counters"]
    started = time.time()
    await h.pool.all("connect", h.options.rate / h.pool.size)
    status = await h.wait_converged("converge")
    ended = max((t for t, _ in status["events"]), default=time.time())
    cpu_after = h.cp_cpu()
    tail_offset = time.time() - ended
    tail = await _cpu_tail(h, tail_seconds)
    await h.pool.all("collect")
    harness_cpu_after, harness_rss_after = h.harness_usage()
    rss_after = h.cp_rss()
    count = h.count
    result: dict[str, Any] = {
        "ok": status["ok"],
        "sidecars": count,
        "converged": status["converged"],
        "nacked": status["nacked"],
        "not_converged": await _mismatches(h),
        "seconds": round(ended - started, 3),
        "connect_rate": h.options.rate,
        "cp_cpu_seconds": round(cpu_after - cpu_before, 3),
        "cp_cpu_after_converged": tail,
        "cp_busy_after_converged_s": busy_after(tail, tail_offset),
        "cp_gc_pauses": h.gc_pauses(started),
        "cp_rss_before_mb": round(rss_before / 2**20, 1),
        "cp_rss_after_mb": round(rss_after / 2**20, 1),
        "cp_rss_per_proxy_kb": round((rss_after - rss_before) / count / 1024, 1),
        "harness_cpu_ms_per_sidecar": round(
            (harness_cpu_after - harness_cpu_before) * 1000 / count, 3
        ),
        "harness_rss_per_sidecar_kb": round(
            (harness_rss_after - harness_rss_before) / count / 1024, 1
        ),
        "held_resources": status["held"],
        "traffic": counter_delta(counters_before, status["counters"]),
        "curve": _curve(status["events"], started),
    }
    if idle_seconds > 0:
        result["idle"] = await idle(h, idle_seconds)
    return result


async def idle(h: Harness, seconds: float) -> dict[str, Any]:
    """CP CPU while everyone is connected and nothing changes."""
    before = (await h.status())["counters"]
    cpu = h.cp_cpu()
    started = time.monotonic()
    await asyncio.sleep(seconds)
    used = h.cp_cpu() - cpu
    elapsed = time.monotonic() - started
    delta = counter_delta(before, (await h.status())["counters"])
    return {
        "seconds": round(elapsed, 2),
        "cp_cpu_percent": round(100 * used / elapsed, 3),
        "responses": delta.get("responses", 0),
    }


async def _sequential_changes(
    h: Harness,
    proxies: list[int],
    label: str,
    within: float = 30.0,
    predict: Callable[[int], tuple[dict[str, Any], Prediction]] | None = None,
) -> dict[str, Any]:
    """One change at a time: write, wait for every affected sidecar, next. ``predict``: the
    document to write for each item and what it delivers (default: a new ``rev`` of that
    proxy, :meth:`Harness.predict`)."""
    predict = predict or h.predict
    pairs: list[tuple[int, float]] = []
    lasts: list[float] = []
    missing = 0
    affected_counts: list[int] = []
    before = (await h.status())["counters"]
    cpu = h.cp_cpu()
    harness_cpu = h.harness_usage()[0]
    started = time.monotonic()
    wall = time.time()
    for proxy in proxies:
        document, prediction = predict(proxy)
        [probe] = await h.register([prediction])
        written_at = await h.write(document)
        change = Written(
            probe, prediction.type_index, prediction.name, prediction.affected, written_at
        )
        found, lost = await h.wait_delivered([change], within)
        pairs.extend(found)
        missing += lost
        affected_counts.append(len(prediction.affected))
        if found:
            lasts.append(max(v for _, v in found))
        await asyncio.sleep(ACK_GRACE)
    elapsed = time.monotonic() - started
    used = h.cp_cpu() - cpu
    harness_used = h.harness_usage()[0] - harness_cpu
    delta = counter_delta(before, (await h.status())["counters"])
    count = len(proxies)
    return {
        "changes": count,
        "affected_per_change": statistics.median(affected_counts) if affected_counts else 0,
        "latency": summarize(v for _, v in pairs),
        "last_sidecar": summarize(lasts),
        "last_sidecar_each_ms": [round(v * 1000, 1) for v in lasts],
        "undelivered": missing,
        "cp_cpu_ms_per_change": round(used * 1000 / max(1, count), 3),
        "harness_cpu_ms_per_change": round(harness_used * 1000 / max(1, count), 3),
        "window_seconds": round(elapsed, 2),
        "cp_gc_pauses": h.gc_pauses(wall),
        "per_change": _per_change(delta, count),
        "_pairs": pairs,
    }


async def _verify(h: Harness, label: str) -> dict[str, Any]:
    """Push the expected digests and wait until every sidecar holds exactly them."""
    await h.push_expected(range(h.count))
    status = await h.wait_converged(label, within=60)
    return {"ok": status["ok"], "not_converged": await _mismatches(h)}


async def targeted_change(h: Harness, *, changes: int = 20) -> dict[str, Any]:
    """A ``target`` instance changes: exactly the ``target_consumers`` proxies are affected."""
    instances = h.plan.instances_of(1) if h.plan.spec.services > 1 else [0]
    proxies = [instances[i % len(instances)] for i in range(changes)]
    result = await _sequential_changes(h, proxies, "targeted")
    result["verify"] = await _verify(h, "verify")
    return result


async def fan_out(h: Harness, *, changes: int = 3) -> dict[str, Any]:
    """An instance of ``shared`` (called by every proxy) changes."""
    instances = h.plan.instances_of(0)
    proxies = [instances[i % len(instances)] for i in range(changes)]
    result = await _sequential_changes(h, proxies, "fan-out", within=120)
    if h.options.slow_fraction > 0:
        pairs = result["_pairs"]
        result["latency_fast"] = summarize(v for i, v in pairs if not h.is_slow(i))
        result["latency_slow"] = summarize(v for i, v in pairs if h.is_slow(i))
    result["verify"] = await _verify(h, "verify")
    return result


async def policy_change(h: Harness, *, changes: int = 20) -> dict[str, Any]:
    """A MeshTimeout selecting the ``policy_group`` proxies (a MeshSubset on a tag only they
    carry) is written ``changes`` times with a new connect timeout: exactly those proxies are
    re-assembled and get new Clusters; every other proxy's config must stay as it was."""
    if not h.plan.policy_group:
        raise ValueError("the policy scenario needs --policy-selects > 0")
    values = list(range(1, changes + 1))
    result = await _sequential_changes(h, values, "policy", predict=h.predict_policy)
    result["verify"] = await _verify(h, "verify")
    return result


async def churn(h: Harness, *, rate: float = 50.0, seconds: float = 30.0) -> dict[str, Any]:
    """``rate`` changes a second for ``seconds``, cycling over services (not ``shared``)."""
    count = max(1, round(rate * seconds))
    proxies = churn_proxies(h.plan, count, h.options.seed)
    planned = [h.predict(p) for p in proxies]
    probes = await h.register([prediction for _, prediction in planned])
    before = (await h.status())["counters"]
    cpu = h.cp_cpu()
    harness_cpu = h.harness_usage()[0]
    waits = h.waits()
    wall = time.time()
    changes: list[Written] = []
    loop = asyncio.get_running_loop()
    began = loop.time()
    late = 0.0
    for k, ((document, prediction), probe) in enumerate(zip(planned, probes, strict=True)):
        delay = began + k / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late = max(late, -delay)
        written_at = await h.write(document)
        changes.append(
            Written(probe, prediction.type_index, prediction.name, prediction.affected, written_at)
        )
    pairs, missing = await h.wait_delivered(changes, within=60)
    await asyncio.sleep(ACK_GRACE)
    elapsed = loop.time() - began
    used = h.cp_cpu() - cpu
    harness_used = h.harness_usage()[0] - harness_cpu
    cp_wait, harness_wait = (b - a for a, b in zip(waits, h.waits(), strict=True))
    delta = counter_delta(before, (await h.status())["counters"])
    return {
        "rate": rate,
        "seconds": seconds,
        "changes": count,
        "writer_max_lag_ms": round(late * 1000, 1),
        "affected_per_change": statistics.median(len(c.affected) for c in changes),
        "latency": summarize(v for _, v in pairs),
        "undelivered": missing,
        "cp_cpu_ms_per_change": round(used * 1000 / count, 3),
        "cp_busy_percent": round(100 * used / elapsed, 1),
        "harness_cpu_ms_per_change": round(harness_used * 1000 / count, 3),
        "harness_busy_percent": round(100 * harness_used / elapsed, 1),
        # Time runnable but not running: other processes on the same CPU held it back.
        "cp_runqueue_wait_percent": round(100 * cp_wait / elapsed, 1),
        "harness_runqueue_wait_percent": round(100 * harness_wait / elapsed, 1),
        "cp_gc_pauses": h.gc_pauses(wall),
        "per_change": _per_change(delta, count),
        "verify": await _verify(h, "verify"),
        "_pairs": pairs,
    }


async def _reconverge(h: Harness, label: str, disrupt: Any) -> dict[str, Any]:
    assert h.pool is not None
    status = await h.status()
    held = status["held"]
    before = status["counters"]
    await h.pool.all("reset")
    started = time.time()
    ready_at = await disrupt()
    status = await h.wait_converged(label)
    ended = max((t for t, _ in status["events"]), default=time.time())
    delta = counter_delta(before, status["counters"])
    return {
        "ok": status["ok"],
        "not_converged": await _mismatches(h),
        "seconds": round(ended - started, 3),
        "seconds_after_ready": round(ended - ready_at, 3),
        "held_resources": held,
        "resources_received": delta.get("resources", 0),
        "resent_percent": round(100 * delta.get("resources", 0) / max(1, held), 3),
        "unchanged_received": delta.get("unchanged", 0),
        "responses": delta.get("responses", 0),
        "reconnect_errors": delta.get("errors", 0),
        "errors_by_kind": status["error_kinds"],
        "curve": _curve(status["events"], started),
    }


async def restart(h: Harness) -> dict[str, Any]:
    """kuma-cp stops (SIGTERM) with everyone connected and starts again on the same port."""

    async def disrupt() -> float:
        assert h.cp is not None
        h.cp.stop()
        await h.start_cp(port=h.port)
        return time.time()

    result = await _reconverge(h, "restart", disrupt)
    result["cp_start_seconds"] = h.notes.get("cp_start_seconds")
    return result


async def mass_reconnect(h: Harness, *, rate: float = 0.0) -> dict[str, Any]:
    """Every sidecar drops its connection and reconnects (``rate`` per second, 0: at once)."""
    assert h.pool is not None
    pool = h.pool

    sampler = CpuSampler(h.cp_cpu, lambda: h.harness_usage()[0])
    dropped = 0.0
    # Whether the storm leaves memory behind (the closed proxies' records linger, the gc
    # freezer keeps what it froze): kuma-cp's RSS with everyone connected, before and after.
    rss_before = h.cp_rss()
    cpu_before = h.cp_cpu()

    async def disrupt() -> float:
        nonlocal dropped
        sampler.start()
        dropped = time.time()
        await pool.all("kick", rate / pool.size)
        return time.time()

    try:
        result = await _reconverge(h, "reconnect", disrupt)
    finally:
        await sampler.stop()
    cpu_after = h.cp_cpu()
    rss_after = h.cp_rss()
    count = max(1, h.count)
    result["cp_cpu_ms_per_reconnect"] = round((cpu_after - cpu_before) * 1000 / count, 3)
    result["cp_rss_before_mb"] = round(rss_before / 2**20, 1)
    result["cp_rss_after_mb"] = round(rss_after / 2**20, 1)
    result["cp_rss_per_proxy_kb_before"] = round(rss_before / count / 1024, 1)
    result["cp_rss_per_proxy_kb_after"] = round(rss_after / count / 1024, 1)
    marks = [m for part in await pool.all("phases") for m in part]
    result["phases"] = storm_report(marks, sampler, dropped, dropped + result["seconds"])
    return result


async def switch_to(h: Harness, kind: str) -> dict[str, Any]:
    """Replace the control plane by ``kind`` (kuma or baseline) on the same port and store."""
    assert h.cp is not None
    assert h.pool is not None
    # Reset first: a sidecar may sync with the new control plane before this call returns.
    await h.pool.all("reset")
    h.cp.stop()
    await h.start_cp(port=h.port, kind=kind)
    await h.push_expected(range(h.count))
    status = await h.wait_converged(f"{kind} up")
    return {"ok": status["ok"], "cp_start_seconds": h.notes.get("cp_start_seconds")}


def latency_pairs(results: dict[str, Any]) -> dict[str, list[float]]:
    """Every scenario's raw latencies, for the CDF plot (taken out of the JSON)."""
    found: dict[str, list[float]] = {}
    for name, result in results.items():
        if isinstance(result, dict) and "_pairs" in result:
            found[name] = [v for _, v in result.pop("_pairs")]
    return found


def median_ratio(a: float, b: float) -> float | None:
    return round(b / a, 1) if a > 0 else None


def compare(kuma: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """Side by side CPU per change and traffic per change of the two control planes."""
    out: dict[str, Any] = {}
    for name in kuma.keys() & baseline.keys():
        a, b = kuma[name], baseline[name]
        if not isinstance(a, dict) or "cp_cpu_ms_per_change" not in a:
            continue
        out[name] = {
            "kuma_cpu_ms_per_change": a["cp_cpu_ms_per_change"],
            "baseline_cpu_ms_per_change": b["cp_cpu_ms_per_change"],
            "cpu_ratio": median_ratio(a["cp_cpu_ms_per_change"], b["cp_cpu_ms_per_change"]),
            "kuma_bytes_per_change": a["per_change"]["bytes"],
            "baseline_bytes_per_change": b["per_change"]["bytes"],
            "kuma_p99_ms": _ms(a["latency"].p99),
            "baseline_p99_ms": _ms(b["latency"].p99),
        }
    return out


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)
