"""A real ZoneIngress: ``kuma-dp run --proxy-type ingress`` with a zone token, on a zone
kuma-cp (directory store), passing mesh mTLS through to real backend sidecars by SNI.

The caller is an Envoy holding a certificate of the mesh (``spiffe://default/web``, issued from
the mesh CA kuma-cp stored) with hand-written static clusters to the ingress's address, each
originating the mesh's mTLS with one SNI, as a sidecar of another zone would (cross-zone EDS is
another slice's; static clusters cannot take SDS over ADS: Envoy crashes). The whole service
reaches both backends, the subset a MeshTCPRoute names reaches only its own, an unknown SNI is
refused by the ingress (its ``no_filter_chain_match`` counter says so). The ingress registers
its ZoneIngress with this zone set, and the zone's writer fills its availableServices. A second
ingress whose zone token has scope ``egress`` is refused on its ADS stream, nothing registered.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuma.mtls.ca import CertificateAuthority
from kuma.mtls.issuer import issue
from kuma.resources import Secret, ZoneIngress, decode
from tests.fixtures.envoy import (
    ControlPlane,
    Envoy,
    EnvoyFactory,
    HttpService,
    eventually,
    free_ports,
    http_get,
    running,
)
from tests.fixtures.processes import ManagedProcess
from tests.fixtures.zone_proxy import start_zone_proxy, zone_proxy_yaml
from tests.integration.test_mtls import ALLOW_ALL

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

ZONE = "zone-1"
MESH = """
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - {name: ca-1, type: builtin, mode: STRICT, conf: {caCert: {keyType: ECDSA}}}
"""
TO_V1 = """
type: MeshTCPRoute
mesh: default
name: backend-v1
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    rules:
    - default:
        backendRefs:
        - {kind: MeshServiceSubset, name: backend, tags: {version: v1}}
"""
SNIS = {
    "whole": "backend{mesh=default}",
    "subset": "backend{mesh=default,version=v1}",
    "unknown": "nobody{mesh=default}",
}


@pytest.fixture
def zone_cp(tmp_path: Path) -> Iterator[ControlPlane]:
    """A zone control plane (no global): it sets its zone on what registers."""
    env = {"KUMA_MODE": "zone", "KUMA_MULTIZONE_ZONE_NAME": ZONE}
    yield from running(ControlPlane(tmp_path / "store", extra_env=env))


def admin_post(port: int, path: str, body: dict[str, Any]) -> str | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", path, body=json.dumps(body).encode())
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    return text if response.status == 200 else None


def web_identity(store: Path, folder: Path) -> dict[str, Path]:
    """A certificate of mesh ``default`` for service ``web`` from the stored builtin CA, as
    files (the key 0600)."""
    found = {r.name: r for p in store.glob("*.yaml") for r in decode(p.read_text())}
    cert, key = (found.get(f"default.ca-builtin-{part}-ca-1") for part in ("cert", "key"))
    assert isinstance(cert, Secret)
    assert isinstance(key, Secret)
    ca = CertificateAuthority.from_pem(base64.b64decode(cert.data), base64.b64decode(key.data))
    identity = issue(ca, "default", {"kuma.io/service": ("web",)}, 3600, now=time.time())
    paths = {"cert": folder / "web.crt", "key": folder / "web.key", "ca": folder / "mesh-ca.crt"}
    paths["key"].touch(mode=0o600)
    paths["key"].write_bytes(identity.key_pem)
    paths["cert"].write_bytes(identity.cert_pem)
    paths["ca"].write_bytes(ca.cert_pem)
    return paths


def via_ingress(
    key: str, sni: str, ingress_port: int, listen_port: int, files: dict[str, Path]
) -> dict[str, Any]:
    """A static TCP listener → a cluster to the ingress originating the mesh's mTLS with
    ``sni`` (ALPN ``kuma``, the backend's SPIFFE id verified), as a sidecar does."""
    context = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": sni,
        "common_tls_context": {
            "alpn_protocols": ["kuma"],
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": str(files["cert"])},
                    "private_key": {"filename": str(files["key"])},
                }
            ],
            "validation_context": {
                "trusted_ca": {"filename": str(files["ca"])},
                "match_typed_subject_alt_names": [
                    {"san_type": "URI", "matcher": {"exact": "spiffe://default/backend"}}
                ],
            },
        },
    }
    address = {"socket_address": {"address": "127.0.0.1", "port_value": ingress_port}}
    cluster = {
        "name": f"via-ingress-{key}",
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": f"via-ingress-{key}",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": context},
    }
    proxy = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": f"via_{key}",
        "cluster": f"via-ingress-{key}",
    }
    listener = {
        "name": f"via-ingress-{key}",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": proxy}]}
        ],
    }
    return {"cluster": cluster, "listener": listener}


def sidecar_yaml(name: str, inbound: int, app: int, **tags: str) -> str:
    document = {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": inbound, "servicePort": app, "tags": tags}],
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


def answer(port: int) -> str | None:
    """The body of one GET, None when the connection or request fails."""
    try:
        status, body = http_get(port, timeout=3)
    except Exception:  # refused, reset, or closed mid-request
        return None
    return body if status == 200 else None


def test_zone_ingress_passes_mtls_through_by_sni(
    zone_cp: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
    tmp_path: Path,
) -> None:
    cp = zone_cp
    cp.put("mesh-default", MESH)
    cp.put("allow-all", ALLOW_ALL)
    cp.put("route-v1", TO_V1)
    for version in ("v1", "v2"):
        name = f"backend-{version}"
        inbound = free_ports(1)[0]
        app = http_services(name).port
        tags = {"kuma.io/service": "backend", "kuma.io/protocol": "tcp", "version": version}
        cp.put(name, sidecar_yaml(name, inbound, app, **tags))
        node = f"default.{name}"
        envoy = envoy_factory(node, "backend", cp.dp_port, token=cp.token(node), ca=cp.ca)
        envoy.wait_live()
        envoy.wait_listener(f"inbound:127.0.0.1:{inbound}")

    ingress_port, ingress_admin, web_inbound, web_app, port_2, admin_2, *listen = free_ports(
        6 + len(SNIS)
    )
    # The caller's own Dataplane (its Envoy's ADS stream needs one to authenticate).
    cp.put("web", sidecar_yaml("web", web_inbound, web_app, **{"kuma.io/service": "web"}))
    ports = dict(zip(SNIS, listen, strict=True))
    files = eventually(lambda: web_identity(cp.folder, tmp_path), "the mesh CA in the store")
    routes = {k: via_ingress(k, sni, ingress_port, ports[k], files) for k, sni in SNIS.items()}
    static = {
        "clusters": [r["cluster"] for r in routes.values()],
        "listeners": [r["listener"] for r in routes.values()],
    }
    web = Envoy(tmp_path, "default.web", "web", cp.dp_port, token=cp.token("default.web"),
                ca=cp.ca, static=static)  # fmt: skip
    ingress: ManagedProcess | None = None
    refused: ManagedProcess | None = None
    try:
        web.wait_live()
        # The ingress: kuma-dp with its ZoneIngress and a zone token (scope ingress).

        def kuma_dp_ingress(name: str, port: int, admin: int, scope: str) -> ManagedProcess:
            token = eventually(
                lambda: admin_post(
                    cp.api_port, "/tokens/zone", {"zone": ZONE, "scope": [scope], "validFor": "1h"}
                ),
                "a zone token",
            )
            document = zone_proxy_yaml("ZoneIngress", name, port, admin)
            return start_zone_proxy("ingress", cp, tmp_path, name, document, token)

        ingress = kuma_dp_ingress("ingress-1", ingress_port, ingress_admin, "ingress")
        whole, subset, unknown = ports["whole"], ports["subset"], ports["unknown"]

        # The whole service: both backends answer through the ingress.
        seen: set[str] = set()

        def both() -> bool | None:
            body = answer(whole)
            if body is not None:
                seen.add(body)
            return True if seen == {"backend-v1", "backend-v2"} else None

        eventually(both, "both backends through the ingress (whole-service SNI)")
        # The subset the route names: only v1.
        assert [answer(subset) for _ in range(6)] == ["backend-v1"] * 6
        # An SNI the ingress does not know: no filter chain, the connection is closed.
        stat = f"listener.127.0.0.1_{ingress_port}.no_filter_chain_match"
        assert answer(unknown) is None
        assert eventually(lambda: _stat(ingress_admin, stat) or None, stat) >= 1

        # Registered with this zone (kuma-dp's registration: a file the store creates, JSON for
        # a ZoneIngress); the zone's writer lists the backends.
        stored = [r for r in cp.stored() if r.name == "ingress-1"]
        assert len(stored) == 1
        assert isinstance(stored[0], ZoneIngress)
        assert stored[0].zone == ZONE
        assert {s.tags.get("version") for s in stored[0].available_services} >= {"v1", "v2"}

        # The operators' view (kumactl inspect zoneingresses): the ingress's stream (node id
        # .ingress-1) is in its overview, online, with its Envoy's version.
        def online() -> dict[str, Any] | None:
            subscriptions = ingress_subscriptions(cp.api_port)
            last = subscriptions[-1] if subscriptions else {}
            return last if last.get("connectTime") and not last.get("disconnectTime") else None

        connected = eventually(online, "ingress-1 online in /zoneingresses/_overview")
        assert connected["version"]["envoy"]["version"], connected

        # A zone token of another scope does not admit an ingress (nothing is registered).
        refused = kuma_dp_ingress("ingress-2", port_2, admin_2, "egress")
        line = cp.running.wait_for_line("refusing the ADS stream of .ingress-2", timeout=20)
        assert "out of the token's scope" in line, line
        assert not list(cp.folder.glob("zoneingress-ingress-2.*"))
    except BaseException:
        # What the ingress's kuma-dp and Envoy said, shown by pytest with the failure.
        print("ingress kuma-dp:", ingress.output()[-4000:] if ingress else "not started")
        raise
    finally:
        codes = [web.stop(), *(p.stop() if p is not None else 0 for p in (ingress, refused))]
    assert codes == [0, 0, 0], ingress.output() if ingress is not None else ""
    # Stopped: its insight stays (its ZoneIngress exists) and shows it offline.
    eventually(
        lambda: all(s.get("disconnectTime") for s in ingress_subscriptions(cp.api_port) or [{}]),
        "ingress-1 offline in /zoneingresses/_overview",
    )


def ingress_subscriptions(api_port: int) -> list[dict[str, Any]]:
    status, text = http_get(api_port, "/zoneingresses/ingress-1/_overview")
    assert status == 200, text
    subscriptions: list[dict[str, Any]] = json.loads(text)["zoneIngressInsight"].get(
        "subscriptions", []
    )
    return subscriptions


def _stat(admin_port: int, name: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        connection.request("GET", f"/stats?filter=^{name}$")
        text = connection.getresponse().read().decode()
    except OSError:
        return 0
    finally:
        connection.close()
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == name and value.isdigit():
            return int(value)
    return 0
