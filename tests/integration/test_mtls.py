"""Mesh mTLS and MeshTrafficPermission on real Envoys configured by a real kuma-cp.

Each test runs ``kuma-cp run`` on a directory store (the Mesh, Dataplanes and permissions are
files in its folder) and Envoys that fetch everything over ADS, certificates included (SDS on
the same stream). "web" sidecars call the "backend" service through their outbound listener;
each backend sidecar fronts a real HTTP service answering with its name.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.fixtures.envoy import (
    ControlPlane,
    Envoy,
    EnvoyFactory,
    HttpService,
    dataplane_yaml,
    eventually,
    free_ports,
    http_get,
)

pytestmark = pytest.mark.envoy

ALLOW_ALL = """
type: MeshTrafficPermission
mesh: default
name: allow-all
spec:
  targetRef: {kind: Mesh}
  from:
  - targetRef: {kind: Mesh}
    default: {action: Allow}
"""


def mesh_yaml(mode: str | None, lifetime: str | None = None) -> str:
    """Mesh ``default``: no mTLS (``mode`` None) or a builtin CA in ``mode``."""
    document: dict[str, Any] = {"type": "Mesh", "name": "default"}
    if mode is not None:
        backend: dict[str, Any] = {"name": "ca-1", "type": "builtin", "mode": mode}
        # An ECDSA root keeps the tests fast; RSA roots are covered by the unit tests.
        backend["conf"] = {"caCert": {"keyType": "ECDSA"}}
        if lifetime is not None:
            backend["dpCert"] = {"rotation": {"expiration": lifetime}}
        document["mtls"] = {"enabledBackend": "ca-1", "backends": [backend]}
    return yaml.safe_dump(document, sort_keys=False)


@dataclass
class Sidecar:
    name: str
    service: str
    inbound_port: int
    service_port: int
    outbound_port: int
    envoy: Envoy


class Mesh:
    def __init__(
        self, cp: ControlPlane, envoys: EnvoyFactory, services: Callable[[str], HttpService]
    ) -> None:
        self.cp = cp
        self._envoys = envoys
        self._services = services

    def set_mesh(self, mode: str | None, lifetime: str | None = None) -> None:
        self.cp.put("mesh-default", mesh_yaml(mode, lifetime))

    def sidecar(self, name: str, service: str, *, app: bool) -> Sidecar:
        inbound, outbound, unused = free_ports(3)
        service_port = self._services(name).port if app else unused
        self.cp.put(
            name,
            dataplane_yaml(
                name,
                inbounds=[(inbound, service_port, service)],
                outbounds=[(outbound, "backend")],
            ),
        )
        node = f"default.{name}"
        token = self.cp.token(node)
        envoy = self._envoys(node, service, self.cp.dp_port, token=token, ca=self.cp.ca)
        envoy.wait_live()
        envoy.wait_listener(f"inbound:127.0.0.1:{inbound}")
        return Sidecar(name, service, inbound, service_port, outbound, envoy)


@pytest.fixture
def mesh(
    control_plane: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
) -> Mesh:
    return Mesh(control_plane, envoy_factory, http_services)


def status_of(port: int) -> int | str:
    """The HTTP status of one GET, or the name of the connection error."""
    try:
        return http_get(port, timeout=3)[0]
    except (OSError, ConnectionError) as error:
        return type(error).__name__
    except Exception as error:  # http.client's protocol errors: the peer closed or spoke TLS
        return type(error).__name__


def wait_status(port: int, expected: int, what: str) -> None:
    eventually(lambda: status_of(port) == expected, what, timeout=30)


def plaintext_refused(port: int) -> bool:
    """A plain HTTP request straight to an inbound gets no HTTP answer."""
    return not isinstance(status_of(port), int)


def certs(envoy: Envoy) -> list[dict[str, Any]]:
    document = yaml.safe_load(envoy.admin("/certs"))
    chains: list[dict[str, Any]] = []
    for entry in document.get("certificates", []):
        chains.extend(entry.get("cert_chain", []))
    return chains


def sans_of(envoy: Envoy) -> set[str]:
    return {
        san["uri"]
        for chain in certs(envoy)
        for san in chain.get("subject_alt_names", [])
        if "uri" in san
    }


def tls_answers_without_certificate(context: ssl.SSLContext, port: int) -> bool:
    """Whether a TLS client with no certificate gets an HTTP answer from ``port``."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return bool(tls.recv(1024))
    except (ssl.SSLError, OSError):
        return False


def test_strict_denies_without_permission_and_refuses_plaintext(mesh: Mesh) -> None:
    mesh.set_mesh("STRICT")
    backend = mesh.sidecar("backend-1", "backend", app=True)
    web = mesh.sidecar("web-1", "web", app=False)
    # mTLS on and no permission: Kuma denies every caller (RBAC in the HTTP manager: 403),
    # which also proves the mTLS handshake between the sidecars worked.
    wait_status(web.outbound_port, 403, "403 without a permission")
    assert web.envoy.stat("cluster.backend.ssl.handshake") > 0
    # A client outside the mesh cannot speak to the inbound in plaintext.
    assert plaintext_refused(backend.inbound_port)
    # Envoy holds certificates with Kuma's SANs.
    expected = {"spiffe://default/backend", "kuma://kuma.io/service/backend"}
    eventually(lambda: expected <= sans_of(backend.envoy), "backend's SPIFFE SANs in /certs")
    assert "spiffe://default/web" in sans_of(web.envoy)
    # And the inbound really requires a client certificate of the mesh.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["kuma"])
    assert not tls_answers_without_certificate(context, backend.inbound_port)
