"""kuma-load with mesh mTLS STRICT: the sidecars follow SDS as Envoy does and converge only
holding their certificate, key and mesh CA; Secrets never enter the config digest."""

from __future__ import annotations

import pytest

from kuma.load import scenarios
from kuma.load.mesh import MeshSpec
from kuma.load.session import Harness, Options
from kuma.xds.generate.tls import identity_secret_name, mesh_ca_secret_name

from .test_smoke import assert_exact

pytestmark = pytest.mark.anyio

PROXIES = 20


async def test_strict_mesh_converges_holding_certificates_and_delivers_a_change() -> None:
    spec = MeshSpec(proxies=PROXIES, instances=5, outbounds=2, target_consumers=5, mtls="strict")
    h = Harness(Options(spec=spec, workers=2, rate=0.0, progress=False, timeout=60.0))
    try:
        await h.setup()
        assert h.reference is not None
        # The reference serves TLS transport sockets (and RBAC from the allow-all permission).
        converge = await scenarios.initial_convergence(h, idle_seconds=0)
        assert converge["ok"], converge
        assert converge["converged"] == PROXIES
        assert converge["not_converged"] == 0
        assert converge["nacked"] == 0  # every Secret carried PEM content
        await assert_exact(h)
        assert h.pool is not None
        parts = await h.pool.each(
            "secrets", [list(range(w, h.count, h.pool.size)) for w in range(h.pool.size)]
        )
        held = {index: names for part in parts for index, names in part.items()}
        wanted = {identity_secret_name("default"), mesh_ca_secret_name("default")}
        assert len(held) == PROXIES
        assert all(set(names) == wanted for names in held.values()), held
        # One CA bundle for the mesh, one identity per proxy (its own key: its own version).
        assert len({names[mesh_ca_secret_name("default")] for names in held.values()}) == 1
        assert len({names[identity_secret_name("default")] for names in held.values()}) == PROXIES
        status = await h.status()
        assert status["secrets"] == 2 * PROXIES
        assert status["counters"]["bad_secrets"] == 0

        targeted = await scenarios.targeted_change(h, changes=1)
        assert targeted["undelivered"] == 0
        assert targeted["verify"] == {"ok": True, "not_converged": 0}
    finally:
        await h.close()
