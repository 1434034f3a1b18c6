"""kuma-load's policy scenario on a mesh with Kuma's default policies: a MeshTimeout that
selects a tagged group through a MeshSubset reaches exactly that group, whose Clusters change,
and every sidecar (the group and the rest) holds exactly what a full regeneration gives."""

from __future__ import annotations

import pytest

from kuma.load import scenarios
from kuma.load.mesh import POLICY_GROUP_TAG, MeshSpec
from kuma.load.session import Harness, Options

from .test_smoke import assert_exact

pytestmark = pytest.mark.anyio

PROXIES = 30
GROUP = 6


async def test_a_policy_change_reaches_exactly_the_proxies_it_selects() -> None:
    spec = MeshSpec(
        proxies=PROXIES,
        instances=5,
        outbounds=2,
        target_consumers=5,
        default_policies=True,
        policy_group=GROUP,
    )
    h = Harness(Options(spec=spec, workers=2, rate=0.0, progress=False, timeout=60.0))
    try:
        await h.setup()
        assert h.reference is not None
        names = {d["name"] for d in h.plan.policy_documents()}
        assert "mesh-timeout-all-default" in names  # what kuma-cp creates with a new mesh
        tagged = [
            i
            for i in range(PROXIES)
            if POLICY_GROUP_TAG in h.plan.document(i)["networking"]["inbound"][0]["tags"]
        ]
        assert sorted(tagged) == sorted(h.plan.policy_group)
        assert len(tagged) == GROUP
        converge = await scenarios.initial_convergence(h, idle_seconds=0)
        assert converge["ok"], converge
        await assert_exact(h)

        result = await scenarios.policy_change(h, changes=2)
        # The reference found the group (and nobody else) selected, each with a new Cluster,
        # and every one of them received it.
        assert result["affected_per_change"] == GROUP
        assert result["undelivered"] == 0
        # Nobody else was sent anything: at most a Cluster and a Listener response each.
        assert 0 < result["per_change"]["responses"] <= 2 * GROUP
        assert result["per_change"]["nacks"] == 0
        assert result["verify"] == {"ok": True, "not_converged": 0}
        await assert_exact(h)
    finally:
        await h.close()
