"""Mesh mTLS and MeshTrafficPermission on real Envoys configured by a real kuma-cp.

Each test runs ``kuma-cp run`` on a directory store (the Mesh, Dataplanes and permissions are
files in its folder) and Envoys that fetch everything over ADS, certificates included (SDS on
the same stream). "web" sidecars call the "backend" service through their outbound listener;
each backend sidecar fronts a real HTTP service answering with its name.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
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
    get_ok,
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
    #: The HTTP service behind the sidecar's inbound (None for a client-only sidecar).
    app: HttpService | None


class Mesh:
    def __init__(
        self, cp: ControlPlane, envoys: EnvoyFactory, services: Callable[[str], HttpService]
    ) -> None:
        self.cp = cp
        self._envoys = envoys
        self._services = services

    def set_mesh(self, mode: str | None, lifetime: str | None = None) -> None:
        self.cp.put("mesh-default", mesh_yaml(mode, lifetime))

    def sidecar(self, name: str, service_name: str, *, app: bool) -> Sidecar:
        inbound, outbound, unused = free_ports(3)
        service = self._services(name) if app else None
        service_port = service.port if service is not None else unused
        self.cp.put(
            name,
            dataplane_yaml(
                name,
                inbounds=[(inbound, service_port, service_name)],
                outbounds=[(outbound, "backend")],
            ),
        )
        node = f"default.{name}"
        token = self.cp.token(node)
        envoy = self._envoys(node, service_name, self.cp.dp_port, token=token, ca=self.cp.ca)
        envoy.wait_live()
        envoy.wait_listener(f"inbound:127.0.0.1:{inbound}")
        return Sidecar(name, service_name, inbound, service_port, outbound, envoy, service)


@pytest.fixture
def mesh(
    control_plane: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
) -> Mesh:
    return Mesh(control_plane, envoy_factory, http_services)


def answer_of(port: int, timeout: float = 3.0) -> tuple[int, str] | str:
    """Status and body of one GET, or the name of the error that stopped it (a refused or
    reset connection, http.client's protocol errors such as IncompleteRead, a timeout)."""
    try:
        return http_get(port, timeout=timeout)
    except Exception as error:
        return type(error).__name__


def status_of(port: int) -> int | str:
    """The HTTP status of one GET, or the name of the connection error."""
    answer = answer_of(port)
    return answer if isinstance(answer, str) else answer[0]


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


def test_strict_needs_a_permission_and_refuses_plaintext(mesh: Mesh) -> None:
    mesh.set_mesh("STRICT")
    backend = mesh.sidecar("backend-1", "backend", app=True)
    web = mesh.sidecar("web-1", "web", app=False)
    # mTLS on and no permission: Kuma denies every caller (RBAC in the HTTP manager: 403).
    wait_status(web.outbound_port, 403, "403 without a permission")
    assert web.envoy.stat("cluster.backend.ssl.handshake") > 0
    mesh.cp.put("allow-all", ALLOW_ALL)
    assert get_ok(web.outbound_port, timeout=30) == "backend-1"
    # A client outside the mesh cannot speak to the inbound in plaintext.
    assert plaintext_refused(backend.inbound_port)
    # Envoy holds certificates with Kuma's SANs.
    eventually(
        lambda: (
            {"spiffe://default/backend", "kuma://kuma.io/service/backend"} <= sans_of(backend.envoy)
        ),
        "backend's SPIFFE SANs in /certs",
    )
    assert "spiffe://default/web" in sans_of(web.envoy)
    # And the inbound really requires a client certificate of the mesh.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["kuma"])
    assert not tls_answers_without_certificate(context, backend.inbound_port)


def test_deny_one_client_keeps_another_allowed(mesh: Mesh) -> None:
    mesh.set_mesh("STRICT")
    mesh.sidecar("backend-1", "backend", app=True)
    web = mesh.sidecar("web-1", "web", app=False)
    other = mesh.sidecar("other-1", "other", app=False)
    mesh.cp.put(
        "permissions",
        """
type: MeshTrafficPermission
mesh: default
name: backend-permissions
spec:
  targetRef: {kind: MeshService, name: backend}
  from:
  - targetRef: {kind: Mesh}
    default: {action: Allow}
  - targetRef: {kind: MeshService, name: web}
    default: {action: Deny}
""",
    )
    assert get_ok(other.outbound_port, timeout=30) == "backend-1"
    wait_status(web.outbound_port, 403, "web denied")
    assert status_of(other.outbound_port) == 200


def test_tcp_deny_closes_the_connection(mesh: Mesh, control_plane: ControlPlane) -> None:
    mesh.set_mesh("STRICT")
    backend = mesh.sidecar("backend-1", "backend", app=True)
    # The backend as a TCP service: a denied connection is closed, not answered.
    control_plane.put(
        "backend-1",
        dataplane_yaml(
            "backend-1",
            inbounds=[(backend.inbound_port, backend.service_port, "backend")],
            protocol="tcp",
        ),
    )
    web = mesh.sidecar("web-1", "web", app=False)
    eventually(lambda: plaintext_refused(web.outbound_port), "TCP connection closed by RBAC", 30)
    control_plane.put("allow-all", ALLOW_ALL)
    assert get_ok(web.outbound_port, timeout=30) == "backend-1"


def test_permissive_accepts_mesh_and_plaintext(mesh: Mesh) -> None:
    mesh.set_mesh("PERMISSIVE")
    mesh.cp.put("allow-all", ALLOW_ALL)
    backend = mesh.sidecar("backend-1", "backend", app=True)
    web = mesh.sidecar("web-1", "web", app=False)
    assert get_ok(web.outbound_port, timeout=30) == "backend-1"
    # Plaintext straight to the inbound is accepted (the raw_buffer chain).
    assert get_ok(backend.inbound_port) == "backend-1"
    # The mesh traffic is mTLS once the backend is ready for it.

    def mtls_used() -> bool:
        get_ok(web.outbound_port)
        return web.envoy.stat("cluster.backend.ssl.handshake") > 0

    eventually(mtls_used, "web's backend cluster speaking mTLS", 30)


def test_switching_modes_keeps_allowed_traffic_flowing(mesh: Mesh) -> None:
    """Kuma's path to mTLS: allow-all first, then PERMISSIVE (clients switch to mTLS once
    the backend is TLS-ready, plaintext still accepted), then STRICT."""
    mesh.set_mesh(None)
    mesh.cp.put("allow-all", ALLOW_ALL)
    mesh.sidecar("backend-1", "backend", app=True)
    web = mesh.sidecar("web-1", "web", app=False)
    assert get_ok(web.outbound_port) == "backend-1"
    failures: list[object] = []
    done = threading.Event()
    sent = 0

    def loop() -> None:
        nonlocal sent
        while not done.is_set():
            result = status_of(web.outbound_port)
            sent += 1
            if result != 200:
                failures.append(result)
            time.sleep(0.02)

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        mesh.set_mesh("PERMISSIVE")
        eventually(
            lambda: web.envoy.stat("cluster.backend.ssl.handshake") > 0,
            "web speaking mTLS in PERMISSIVE",
            30,
        )
        mesh.set_mesh("STRICT")
        time.sleep(3)  # requests keep flowing through the switch
    finally:
        done.set()
        worker.join()
    assert sent > 20
    assert failures == []


def listener_changes_settled(envoy: Envoy) -> bool:
    """No listener of ``envoy`` warming, draining or with filter chains draining."""
    stats = envoy.stats()
    return not any(
        stats.get(f"listener_manager.{gauge}", 0)
        for gauge in (
            "total_listeners_warming",
            "total_listeners_draining",
            "total_filter_chains_draining",
        )
    )


@pytest.mark.parametrize(("start", "end"), [("PERMISSIVE", "STRICT"), ("STRICT", "PERMISSIVE")])
def test_mode_switch_leaves_mtls_requests_in_flight_alone(mesh: Mesh, start: str, end: str) -> None:
    """Between PERMISSIVE and STRICT only the inbound listener's filter chains change and its
    mesh-mTLS chain stays as it was, so Envoy updates it in place and drains only the chains
    that went away: a request in flight on an mTLS connection outlives the switch and every
    drain it caused (Kuma's shapes replace the whole listener, and Envoy closes the old one's
    connections when the drain time, 1 s here, ends: this request's body would be cut)."""
    mesh.set_mesh(start)
    mesh.cp.put("allow-all", ALLOW_ALL)
    backend = mesh.sidecar("backend-1", "backend", app=True)
    web = mesh.sidecar("web-1", "web", app=False)
    eventually(
        lambda: (
            http_get(web.outbound_port) == (200, "backend-1")
            and web.envoy.stat("cluster.backend.ssl.handshake") > 0
        ),
        "web calling backend over mTLS",
        30,
    )
    app = backend.app
    assert app is not None
    app.hold_body = threading.Event()
    hits = app.hits
    answers: list[object] = []
    worker = threading.Thread(
        target=lambda: answers.append(answer_of(web.outbound_port, timeout=60))
    )
    worker.start()
    try:
        eventually(lambda: app.hits > hits, "the request at the backend")
        updates = backend.envoy.stat("listener_manager.lds.update_success")
        in_place = backend.envoy.stat("listener_manager.listener_in_place_updated")
        mesh.set_mesh(end)
        eventually(
            lambda: backend.envoy.stat("listener_manager.lds.update_success") > updates,
            f"the backend's listeners for {end}",
        )
        eventually(lambda: listener_changes_settled(backend.envoy), "the drains to end", 30)
    finally:
        app.hold_body.set()
        worker.join()
    assert answers == [(200, "backend-1")]
    assert backend.envoy.stat("listener_manager.listener_in_place_updated") > in_place


@pytest.mark.slow
def test_rotation_is_invisible_to_traffic(mesh: Mesh) -> None:
    mesh.set_mesh("STRICT", lifetime="20s")
    mesh.cp.put("allow-all", ALLOW_ALL)
    backend = mesh.sidecar("backend-1", "backend", app=True)
    web = mesh.sidecar("web-1", "web", app=False)
    assert get_ok(web.outbound_port, timeout=30) == "backend-1"
    first = eventually(lambda: certs(backend.envoy) or None, "backend certificate")
    # The configured lifetime (plus Kuma's 10 s of clock skew before "now").
    valid_from = datetime.fromisoformat(first[0]["valid_from"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(first[0]["expiration_time"].replace("Z", "+00:00"))
    assert 29 <= (expires - valid_from).total_seconds() <= 31
    serials = {first[0]["serial_number"]}
    failures: list[object] = []
    deadline = time.monotonic() + 45
    sent = 0
    while time.monotonic() < deadline:
        result = status_of(web.outbound_port)
        sent += 1
        if result != 200:
            failures.append(result)
        chain = certs(backend.envoy)
        if chain:
            serials.add(chain[0]["serial_number"])
        time.sleep(0.05)
    assert len(serials) >= 3, f"expected several rotations in 45 s, saw {serials}"
    assert sent > 100
    assert failures == []
