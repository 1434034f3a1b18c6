"""kuma-load end to end: real kuma-cp on the directory store, simulated sidecars in worker
processes. Asserts what the sidecars hold (exactly the reference config), never timings."""

from __future__ import annotations

from typing import Any

import pytest

from kuma.load import scenarios
from kuma.load.mesh import MeshSpec
from kuma.load.procs import ManagedProcess
from kuma.load.session import Harness, Options

pytestmark = pytest.mark.anyio

PROXIES = 120


async def held_configs(h: Harness) -> dict[int, dict[int, dict[str, str]]]:
    assert h.pool is not None
    parts = await h.pool.each(
        "held", [list(range(w, h.count, h.pool.size)) for w in range(h.pool.size)]
    )
    merged: dict[int, dict[int, dict[str, str]]] = {}
    for part in parts:
        merged.update(part)
    return merged


def without_empty(config: dict[int, dict[str, str]]) -> dict[int, dict[str, str]]:
    return {t: names for t, names in config.items() if names}


async def assert_exact(h: Harness) -> None:
    assert h.reference is not None
    held = await held_configs(h)
    assert len(held) == h.count
    for index in range(h.count):
        assert without_empty(held[index]) == h.reference.configs[index], index


def options(**overrides: Any) -> Options:
    spec = MeshSpec(
        proxies=PROXIES, instances=10, outbounds=3, target_consumers=30, transparent=0.1
    )
    return Options(spec=spec, workers=2, rate=0.0, progress=False, timeout=45.0, **overrides)


async def test_kuma_cp_converges_exactly_and_delivers_a_targeted_change() -> None:
    h = Harness(options())
    try:
        await h.setup()
        # As operators run it: TLS to a verified kuma-cp, one dataplane token per sidecar.
        assert h.ca.startswith("-----BEGIN CERTIFICATE-----")
        assert len(h.tokens) == PROXIES
        converge = await scenarios.initial_convergence(h, idle_seconds=0)
        assert converge["ok"], converge
        assert converge["converged"] == PROXIES
        assert converge["not_converged"] == 0
        await assert_exact(h)
        assert isinstance(h.cp, ManagedProcess)
        assert "refusing the ADS stream" not in h.cp.output()

        targeted = await scenarios.targeted_change(h, changes=2)
        assert targeted["undelivered"] == 0
        # Every consumer of 'target' got each change (its transparent callers included).
        assert targeted["latency"].count == 2 * targeted["affected_per_change"]
        assert targeted["affected_per_change"] >= 30
        assert targeted["verify"] == {"ok": True, "not_converged": 0}
        await assert_exact(h)

        reconnect = await scenarios.mass_reconnect(h)
        assert reconnect["ok"]
        # Reconnecting with initial_resource_versions: nothing held is sent again.
        assert reconnect["resources_received"] == 0
        # Every sidecar's phases, drop to first response read, came back.
        assert reconnect["phases"]["since_drop"]["read"]["count"] == PROXIES
        assert reconnect["phases"]["steps"]["tcp_to_tls"]["count"] == PROXIES
        # Dropped and reconnected as the harness does it: no stream counted as failed.
        assert reconnect["reconnect_errors"] == 0
        # kuma-cp's memory with everyone connected, before the drop and after the storm.
        assert reconnect["cp_rss_before_mb"] > 0
        assert reconnect["cp_rss_after_mb"] > 0
        assert reconnect["cp_cpu_ms_per_reconnect"] > 0
        await assert_exact(h)
    finally:
        await h.close()


async def test_baseline_resends_whole_configs() -> None:
    h = Harness(options(cp="baseline"))
    try:
        await h.setup()
        converge = await scenarios.initial_convergence(h, idle_seconds=0)
        assert converge["ok"], converge
        targeted = await scenarios.targeted_change(h, changes=1)
        assert targeted["undelivered"] == 0
        # The snapshot baseline sends each affected proxy its whole config again.
        assert targeted["per_change"]["resources"] > 3 * targeted["affected_per_change"]
    finally:
        await h.close()


@pytest.mark.envoy
async def test_real_envoys_converge_to_the_same_reference() -> None:
    from kuma.load.envoys import real_envoy_check

    spec = MeshSpec(proxies=4, instances=2, outbounds=1, target_consumers=2, real_envoy=True)
    h = Harness(Options(spec=spec, progress=False, timeout=60.0))
    try:
        await h.setup(sidecars=False)
        result = await real_envoy_check(h, 4, rate=20.0, changes=1)
    finally:
        await h.close()
    assert result["converged"] == 4
    assert result["rejected_updates"] == 0
    assert result["undelivered"] == 0
    assert result["exact_after_changes"] == 4
