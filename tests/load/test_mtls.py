"""kuma-load with mesh mTLS STRICT: the sidecars follow SDS as Envoy does and converge only
holding their certificate, key and mesh CA; Secrets never enter the config digest."""

from __future__ import annotations

import pytest

from kuma.load import rotation, scenarios
from kuma.load.mesh import MeshSpec
from kuma.load.session import Harness, Options
from kuma.xds.generate.tls import identity_secret_name, mesh_ca_secret_name

from .test_smoke import assert_exact

pytestmark = pytest.mark.anyio

PROXIES = 20


async def test_strict_mesh_converges_holding_certificates_delivers_changes_and_rotates() -> None:
    spec = MeshSpec(
        proxies=PROXIES,
        instances=5,
        outbounds=2,
        target_consumers=5,
        mtls="strict",
        mtls_expiration="12s",
    )
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

        # Every certificate replaced once, at 70-80 % of its lifetime as kuma-cp schedules it
        # (measured at the sidecars: the bounds leave room for delivery delays), with the
        # clusters and listeners untouched and still exact.
        wave = await rotation.rotation_wave(h, changes_during=2)
        assert wave["sidecars_rotated"] == PROXIES
        assert wave["rotations_measured"] == PROXIES - wave["proxies_changed_during_wave"]
        percents = wave["rotation_at_percent_of_lifetime"]
        assert percents["min"] > 55
        assert percents["max"] < 95
        # One identity Secret per rotation or tag change; the unchanged CA is not resent.
        assert wave["ca_secrets_resent"] == 0
        assert PROXIES <= wave["secrets"] <= PROXIES + wave["targeted_changes_during_wave"]
        assert wave["targeted_undelivered_during_wave"] == 0
        assert wave["verify"] == {"ok": True, "not_converged": 0}
        await assert_exact(h)
        parts = await h.pool.each(
            "secrets", [list(range(w, h.count, h.pool.size)) for w in range(h.pool.size)]
        )
        rotated = {index: names for part in parts for index, names in part.items()}
        identity = identity_secret_name("default")
        assert all(rotated[i][identity] != held[i][identity] for i in range(PROXIES))
    finally:
        await h.close()
