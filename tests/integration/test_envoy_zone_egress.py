"""A sidecar reaches an ExternalService (a local HTTP server standing in for the outside)
through a real zone egress Envoy, in an mTLS mesh with ``routing.zoneEgress: true``.

The sidecar is configured by a real kuma-cp over ADS (its identity over SDS): its cluster for
the external service points at the ZoneEgress stored in kuma-cp, with the mesh's mTLS. The
egress Envoy runs the config ``kuma/xds/generate/zone_egress.py`` generates for that egress,
given to it in a static bootstrap with an identity ``spiffe://default/zone-egress`` issued by
``kuma/mtls`` from the mesh's CA that kuma-cp created (kuma-cp does not serve zone egresses
over ADS yet: see the session note). MeshTrafficPermission is enforced at the egress: the
permitted service answers, the one no permission selects gets 403.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf.json_format import MessageToDict

from kuma.mtls.ca import CertificateAuthority
from kuma.mtls.issuer import issue
from kuma.resources import from_document
from kuma.resources.model import ExternalService, Policy, ZoneEgress
from kuma.xds.generate.external import external_protocol, resolve_endpoints
from kuma.xds.generate.tls import identity_secret, mesh_ca_secret
from kuma.xds.generate.via_egress import ZONE_EGRESS_SERVICE
from kuma.xds.generate.zone_egress import EgressService, egress_permissions, generate_zone_egress
from tests.fixtures.envoy import (
    ControlPlane,
    Envoy,
    EnvoyFactory,
    HttpService,
    dataplane_yaml,
    envoy_binary,
    eventually,
    free_ports,
    http_get,
)
from tests.fixtures.processes import ManagedProcess

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


def _mesh_ca(folder: Path) -> CertificateAuthority:
    """The mesh's builtin CA, as kuma-cp stored it (its two Secrets)."""

    def read() -> CertificateAuthority | None:
        found: dict[str, bytes] = {}
        for path in folder.glob("*.yaml"):
            document = yaml.safe_load(path.read_text())
            if isinstance(document, dict) and document.get("type") == "Secret":
                found[document["name"]] = base64.b64decode(document["data"])
        cert = found.get("default.ca-builtin-cert-ca-1")
        key = found.get("default.ca-builtin-key-ca-1")
        return CertificateAuthority.from_pem(cert, key) if cert and key else None

    return eventually(read, "the mesh CA in the store")


def _static_sds(config: Any) -> Any:
    """The generated config with its SDS references made static (the egress gets its Secrets
    in the bootstrap, not over ADS)."""
    if isinstance(config, dict):
        return {k: _static_sds(v) for k, v in config.items() if k != "sdsConfig"}
    if isinstance(config, list):
        return [_static_sds(v) for v in config]
    return config


class StaticEnvoy(Envoy):
    """An Envoy with a bootstrap of static resources only."""

    def __init__(self, workdir: Path, name: str, bootstrap: dict[str, Any]) -> None:
        self.node_id = name
        self.transport = "DELTA_GRPC"
        config = workdir / f"envoy-{name}.yaml"
        config.write_text(yaml.safe_dump(bootstrap))
        self._admin_path = config.with_suffix(".admin")
        argv = [envoy_binary(), "--disable-hot-restart", "--concurrency", "1", "-l", "info"]
        argv += ["--drain-time-s", "1", "-c", str(config)]
        argv += ["--admin-address-path", str(self._admin_path)]
        self.process = ManagedProcess(argv)
        self.admin_port = self._wait_admin_port()


def _egress_bootstrap(
    egress: ZoneEgress, services: list[EgressService], ca: CertificateAuthority
) -> dict[str, Any]:
    listener, clusters = generate_zone_egress(egress, services)
    assert listener is not None
    identity = issue(
        ca, "default", {"kuma.io/service": (ZONE_EGRESS_SERVICE,)}, 3600, now=time.time()
    )
    secrets = [
        identity_secret("default", identity.cert_pem, identity.key_pem),
        mesh_ca_secret("default", [ca.cert_pem]),
    ]
    return {
        "node": {"id": f".{egress.name}", "cluster": "zone-egress"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": _static_sds(
            {
                "listeners": [MessageToDict(listener)],
                "clusters": [MessageToDict(c) for c in clusters],
                "secrets": [MessageToDict(s) for s in secrets],
            }
        ),
    }


def test_a_sidecar_reaches_an_external_service_through_a_real_zone_egress(
    control_plane: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
    tmp_path: Path,
) -> None:
    outside = http_services("outside")
    inbound, app, to_outside, to_closed, egress_port = free_ports(5)
    control_plane.put("mesh-default", _mesh())
    egress_document = {
        "type": "ZoneEgress",
        "name": "egress-1",
        "networking": {"address": "127.0.0.1", "port": egress_port},
    }
    control_plane.put("egress-1", yaml.safe_dump(egress_document))
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
    # The sidecar's cluster leads to the egress, not to the outside.
    web.wait_endpoints("outside", {egress_port})
    assert web.dynamic_config()["clusters"]["outside"]["type"] == "EDS"

    # The egress's own config, as generated for the ZoneEgress and the mesh's resources.
    egress = from_document(egress_document)
    assert isinstance(egress, ZoneEgress)
    policy = from_document(yaml.safe_load(ALLOW_WEB))
    assert isinstance(policy, Policy)
    services = []
    for document in documents:
        resource = from_document(document)
        assert isinstance(resource, ExternalService)
        endpoints = resolve_endpoints({resource.name: resource}, {}, "default")
        permissions = egress_permissions("default", resource.tags, [policy])
        services.append(
            EgressService(
                "default", resource.service, external_protocol(endpoints), endpoints, permissions
            )
        )
    ca = _mesh_ca(control_plane.folder)
    proxy = StaticEnvoy(tmp_path, "egress-1", _egress_bootstrap(egress, services, ca))
    try:
        proxy.wait_live()
        # Permitted: the sidecar's mTLS ends at the egress, which calls the outside plainly.
        eventually(lambda: http_get(to_outside)[1] == "outside" or None, "outside via egress")
        assert proxy.stat("cluster.default_outside.upstream_rq_total") >= 1
        assert web.stat("cluster.outside.ssl.handshake") >= 1
        hits = outside.hits
        # No permission selects "closed": the egress's RBAC denies it (Kuma's default).
        status, _ = http_get(to_closed)
        assert status == 403
        assert outside.hits == hits
        assert proxy.stat("http.closed.rbac.denied") >= 1
    finally:
        code = proxy.stop()
    assert code == 0
