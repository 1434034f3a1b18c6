"""kuma-load's multi-zone run at small scale: a global and two zone kuma-cps (real processes,
KDS over TLS with zone tokens), 20 simulated sidecars per zone, a registered ZoneIngress per
zone, mesh mTLS. Every sidecar of both zones converges to exactly its zone's reference (which
has the other zone's ingress as an endpoint of every service), and a change in zone-2 reaches
every affected zone-1 sidecar with the predicted ClusterLoadAssignment; KDS counts the bytes
of the change on each link."""

from __future__ import annotations

import pytest

from kuma.load.mesh import MeshSpec
from kuma.load.session import Options
from kuma.load.zone_scenario import ZoneRun, cross_zone_changes

from .test_smoke import assert_exact

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(180)]

PROXIES = 20
CHANGES = 2


async def test_a_change_in_zone_2_reaches_zone_1s_consumers_exactly() -> None:
    spec = MeshSpec(proxies=PROXIES, instances=5, outbounds=2, target_consumers=5, mtls="strict")
    run = ZoneRun(Options(spec=spec, workers=1, rate=0.0, progress=False, timeout=90.0))
    try:
        await run.start()
        one, two = run.zones
        # Not vacuous: zone-1's reference reaches 'target' through zone-2's ingress as well.
        assert one.reference is not None
        ports = {e.port for e in one.reference.view.endpoints("target")}
        assert two.ingress_port in ports
        converge = await run.converge()
        for zone in ("zone-1", "zone-2"):
            assert converge[zone]["ok"], converge[zone]
            assert converge[zone]["not_converged"] == 0
            assert converge[zone]["nacked"] == 0
        await assert_exact(one)

        result = await cross_zone_changes(run, service=1, changes=CHANGES, within=20.0)
        assert result["zone_1_affected_per_change"] == 5
        assert result["zone_1_undelivered"] == 0
        assert result["zone_1_latency"].count == 5 * CHANGES
        assert result["zone_2_undelivered"] == 0
        assert result["verify"] == {
            "zone-1": {"ok": True, "not_converged": 0},
            "zone-2": {"ok": True, "not_converged": 0},
        }
        await assert_exact(one)
        # The changed ingress entries went up from zone-2 and down to zone-1, never back to
        # zone-2 (a zone's own ingress is not sent to it).
        kds = result["kds_bytes_per_change"]
        assert kds["zone-2_to_global"]["ZoneIngressService"] > 0
        assert kds["global_to_zone-1"]["ZoneIngressService"] > 0
        assert "ZoneIngressService" not in kds.get("global_to_zone-2", {})
        assert set(result["cpu_ms_per_change"]) == {"global", "zone-1", "zone-2"}
        # The path's milestones, from the three kuma-cps' logs, in causal order.
        hops = result["zone_1_hops_median_ms"]
        order = ["ingress_written", "global_received", "zone_1_received", "first_zone_1_sidecar"]
        assert None not in [hops[name] for name in order], hops
        assert [hops[name] for name in order] == sorted(hops[name] for name in order), hops
    finally:
        await run.close()
