"""A sidecar reaches an ExternalService (a local HTTP server standing in for the outside)
through a real zone egress, in an mTLS mesh with ``routing.zoneEgress: true``.

Both are configured by a real kuma-cp over ADS, certificates over SDS: the sidecar's cluster
for the external service leads to the egress with the mesh's mTLS; the egress is ``kuma-dp run
--proxy-type egress`` with a zone token, which registers its ZoneEgress, gets an identity
``spiffe://default/zone-egress`` of the mesh and its config (SNI filter chains, RBAC, clusters
to the outside). MeshTrafficPermission is enforced at the egress: the permitted service
answers, one no permission selects gets 403 until a permission for it arrives. Kuma's other
policies at the egress: a MeshFaultInjection for web's requests (by the callers' tags header)
aborts them there with its status, a MeshRateLimit answers 429 there; the outside sees neither.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuma.resources import decode
from kuma.resources.model import Admin, ZoneEgress, ZoneEgressNetworking
from tests.fixtures.envoy import (
    ControlPlane,
    EnvoyFactory,
    HttpService,
    dataplane_yaml,
    eventually,
    free_ports,
    http_get,
)
from tests.fixtures.zone_proxy import start_zone_proxy
from tests.integration.test_envoy_zone_ingress import _stat, admin_post

pytestmark = pytest.mark.envoy

ALLOW_WEB = """
type: MeshTrafficPermission
mesh: default
name: web-to-outside
spec:
  targetRef: {kind: MeshService, name: outside}
  from:
  - targetRef: {kind: MeshService, name: web}
    default: {action: Allow}
"""

#: Kuma's policies at the egress (``kuma.policies.egress``): a fault for web's requests to
#: ``outside`` (matched on the ``x-kuma-tags`` header web's sidecar adds), a rate limit of one
#: request per ten minutes to ``closed``.
FAULT_FOR_WEB = """
type: MeshFaultInjection
mesh: default
name: outside-fails-for-web
spec:
  targetRef: {kind: MeshService, name: outside}
  from:
  - targetRef: {kind: MeshService, name: web}
    default:
      http:
      - abort: {httpStatus: 418, percentage: 100}
"""
LIMIT_CLOSED = """
type: MeshRateLimit
mesh: default
name: closed-limited
spec:
  targetRef: {kind: MeshService, name: closed}
  from:
  - targetRef: {kind: Mesh}
    default:
      local:
        http:
          requestRate: {num: 1, interval: 10m}
"""


def _mesh() -> str:
    backend = {"name": "ca-1", "type": "builtin", "conf": {"caCert": {"keyType": "ECDSA"}}}
    document = {
        "type": "Mesh",
        "name": "default",
        "mtls": {"enabledBackend": "ca-1", "backends": [backend]},
        "routing": {"zoneEgress": True},
    }
    return yaml.safe_dump(document, sort_keys=False)


def _external(service: str, port: int) -> dict[str, Any]:
    return {
        "type": "ExternalService",
        "mesh": "default",
        "name": service,
        "networking": {"address": f"localhost:{port}"},
        "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"},
    }


def test_a_sidecar_reaches_an_external_service_through_a_real_zone_egress(
    control_plane: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
    tmp_path: Path,
) -> None:
    outside = http_services("outside")
    inbound, app, to_outside, to_closed, egress_port, egress_admin = free_ports(6)
    control_plane.put("mesh-default", _mesh())
    egress_document = {
        "type": "ZoneEgress",
        "name": "egress-1",
        "networking": {
            "address": "127.0.0.1",
            "port": egress_port,
            "admin": {"port": egress_admin},
        },
    }
    documents = [_external("outside", outside.port), _external("closed", outside.port)]
    for document in documents:
        control_plane.put(f"es-{document['name']}", yaml.safe_dump(document))
    control_plane.put("mtp", ALLOW_WEB)
    control_plane.put(
        "web",
        dataplane_yaml(
            "web",
            inbounds=[(inbound, app, "web")],
            outbounds=[(to_outside, "outside"), (to_closed, "closed")],
        ),
    )
    web = envoy_factory(
        "default.web",
        "web",
        control_plane.dp_port,
        token=control_plane.token("default.web"),
        ca=control_plane.ca,
    )
    web.wait_live()
    web.wait_listener(f"outbound:127.0.0.1:{to_outside}")

    # The egress: kuma-dp with its ZoneEgress and a zone token (scope egress).
    token = eventually(
        lambda: admin_post(
            control_plane.api_port,
            "/tokens/zone",
            {"zone": "", "scope": ["egress"], "validFor": "1h"},
        ),
        "a zone token",
    )
    egress = start_zone_proxy(
        "egress",
        control_plane,
        tmp_path,
        "egress-1",
        yaml.safe_dump(egress_document),
        token,
    )
    try:
        # Registered by kuma-dp (the sidecar's cluster then leads to it, not to the outside).
        web.wait_endpoints("outside", {egress_port})
        assert web.dynamic_config()["clusters"]["outside"]["type"] == "EDS"
        # Permitted: the sidecar's mTLS ends at the egress, which calls the outside plainly.
        eventually(lambda: http_get(to_outside)[1] == "outside" or None, "outside via egress")
        assert _stat(egress_admin, "cluster.default_outside.upstream_rq_total") >= 1
        assert web.stat("cluster.outside.ssl.handshake") >= 1
        hits = outside.hits
        # No permission selects "closed": the egress's RBAC denies it (Kuma's default).
        assert http_get(to_closed)[0] == 403
        assert outside.hits == hits
        assert _stat(egress_admin, "http.closed.rbac.denied") >= 1
        # A permission for it: the egress is re-assembled and lets it through.
        control_plane.put("mtp-closed", ALLOW_WEB.replace("outside", "closed"))
        eventually(lambda: http_get(to_closed)[0] == 200 or None, "closed permitted")
        # The fault is injected by the egress: the outside sees none of the aborted requests.
        control_plane.put("mfi", FAULT_FOR_WEB)
        eventually(lambda: http_get(to_outside)[0] == 418 or None, "abort at the egress")
        hits = outside.hits
        assert http_get(to_outside)[0] == 418
        assert outside.hits == hits
        assert _stat(egress_admin, "http.outside.fault.aborts_injected") >= 2
        # The egress's bucket for "closed" empties: 429, the outside not reached.
        control_plane.put("mrl", LIMIT_CLOSED)
        eventually(lambda: http_get(to_closed)[0] == 429 or None, "rate limited at the egress")
        hits = outside.hits
        assert http_get(to_closed)[0] == 429
        assert outside.hits == hits
        stored = [
            r
            for p in control_plane.folder.glob("*.yaml")
            for r in decode(p.read_text())
            if isinstance(r, ZoneEgress)
        ]
        assert [(r.name, r.networking) for r in stored] == [
            ("egress-1", ZoneEgressNetworking("127.0.0.1", egress_port, Admin(egress_admin)))
        ]
        assert "BEGIN EC PRIVATE KEY" not in control_plane.output()
    except BaseException:
        print("egress kuma-dp:", egress.output()[-4000:])
        raise
    finally:
        code = egress.stop()
    assert code == 0, egress.output()
