"""kuma-load's ``--fault-from``: a MeshFaultInjection naming a client makes the mesh need the
callers' tags; kuma-cp then serves every sidecar what a from-scratch generation gives (each
HTTP outbound listener with its own proxy's ``x-kuma-tags``)."""

from __future__ import annotations

import pytest

from kuma.load import scenarios
from kuma.load.mesh import MeshSpec
from kuma.load.session import Harness, Options
from kuma.policies.caller_tags import needs_caller_tags
from kuma.resources import from_document
from kuma.resources.model import Policy

from .test_smoke import assert_exact

pytestmark = pytest.mark.anyio


async def test_a_mesh_that_needs_the_callers_tags_converges_exactly() -> None:
    spec = MeshSpec(proxies=20, instances=5, outbounds=2, target_consumers=5, fault_from="shared")
    h = Harness(Options(spec=spec, workers=2, rate=0.0, progress=False, timeout=60.0))
    try:
        await h.setup()
        by_kind: dict[str, list[Policy]] = {}
        for document in h.plan.policy_documents():
            policy = from_document(document)
            assert isinstance(policy, Policy)
            by_kind.setdefault(policy.TYPE, []).append(policy)
        assert needs_caller_tags(by_kind)
        converge = await scenarios.initial_convergence(h, idle_seconds=0)
        assert converge["ok"], converge
        await assert_exact(h)
    finally:
        await h.close()
