"""kuma-load's ``--every-policy``: with one mesh-wide policy of each kind and the Mesh's metrics
backend, kuma-cp serves every sidecar exactly what a from-scratch generation gives, and each
kind is really in what they hold (so the 10,000-sidecar figures measured with it are measured
with the features on)."""

from __future__ import annotations

import pytest

from kuma.load import scenarios
from kuma.load.mesh import MeshSpec
from kuma.load.session import Harness, Options
from kuma.policies import resolve
from kuma.resources import Dataplane, Mesh, from_document
from kuma.resources.model import Policy
from kuma.resources.validation import validate
from kuma.xds.generate import generate_proxy

from .test_smoke import assert_exact

pytestmark = pytest.mark.anyio

KINDS = {
    "MeshAccessLog",
    "MeshFaultInjection",
    "MeshRateLimit",
    "MeshHealthCheck",
    "MeshLoadBalancingStrategy",
}


async def test_every_policy_kind_is_served_exactly() -> None:
    spec = MeshSpec(proxies=20, instances=5, outbounds=2, target_consumers=5, every_policy=True)
    h = Harness(Options(spec=spec, workers=2, rate=0.0, progress=False, timeout=60.0))
    try:
        await h.setup()
        resources = [from_document(d) for d in h.plan.policy_documents()]
        assert {r.TYPE for r in resources} == KINDS
        mesh = from_document(h.plan.mesh_document())
        assert isinstance(mesh, Mesh)
        assert mesh.metrics is not None
        assert all(validate(r) == [] for r in [*resources, mesh])
        converge = await scenarios.initial_convergence(h, idle_seconds=0)
        assert converge["ok"], converge
        await assert_exact(h)
        # What the exact check compared is versions; the contents carry every kind.
        assert h.reference is not None
        policies: dict[str, list[Policy]] = {}
        for resource in resources:
            assert isinstance(resource, Policy)
            policies.setdefault(resource.TYPE, []).append(resource)
        dataplane = from_document(h.plan.document(0))
        assert isinstance(dataplane, Dataplane)
        generated = generate_proxy(
            dataplane, h.reference.view, 9901, policies=resolve(dataplane, policies)
        )
        text = str(generated)
        for marker in (
            "envoy.filters.http.fault",
            "envoy.filters.http.local_ratelimit",
            "health_checks",
            "LEAST_REQUEST",
            "access_log",
            "kuma:metrics:prometheus",
        ):
            assert marker in text, marker
    finally:
        await h.close()
