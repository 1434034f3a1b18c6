"""Cross-zone endpoints in a real Envoy: web's sidecar, configured by a real kuma-cp, gets zone-2's
ingress as the endpoint of ``backend`` (weight = instances, locality zone-2) and opens mTLS to
it with the SNI the ingress routes on (``tls.sni_from_tags``). The ingress here is a stand-in
that records the ClientHello (the ZoneIngress proxy's own config is another slice's); a change
of its instances and its removal reach Envoy."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kuma.xds.generate.tls import sni_from_tags
from tests.fixtures.envoy import (
    ControlPlane,
    EnvoyFactory,
    dataplane_yaml,
    eventually,
    free_ports,
    http_get,
)
from tests.integration.test_mtls import mesh_yaml

pytestmark = pytest.mark.envoy


class ClientHellos:
    """A TCP listener standing in for zone-2's ingress: it reads each connection's TLS
    ClientHello, records its SNI and ALPN, and closes."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self.seen: list[tuple[str, list[str]]] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.seen.append(parse_client_hello(read_record(conn)))
                except (OSError, ValueError, IndexError):
                    continue

    def close(self) -> None:
        self._server.close()
        self._thread.join(timeout=5)


def read_record(conn: socket.socket) -> bytes:
    header = _read(conn, 5)
    if header[0] != 0x16:
        raise ValueError("not a TLS handshake")
    return _read(conn, int.from_bytes(header[3:5], "big"))


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ValueError("closed early")
        data += chunk
    return data


def parse_client_hello(body: bytes) -> tuple[str, list[str]]:
    """(SNI, ALPN protocols) of a ClientHello handshake message (RFC 8446 4.1.2)."""
    if body[0] != 0x01:
        raise ValueError("not a ClientHello")
    at = 4 + 2 + 32  # handshake header, legacy_version, random
    at += 1 + body[at]  # session id
    at += 2 + int.from_bytes(body[at : at + 2], "big")  # cipher suites
    at += 1 + body[at]  # compression methods
    end = at + 2 + int.from_bytes(body[at : at + 2], "big")
    at += 2
    sni, alpn = "", []
    while at < end:
        kind = int.from_bytes(body[at : at + 2], "big")
        size = int.from_bytes(body[at + 2 : at + 4], "big")
        data = body[at + 4 : at + 4 + size]
        at += 4 + size
        if kind == 0:  # server_name: list length, name type, name length, name
            sni = data[5 : 5 + int.from_bytes(data[3:5], "big")].decode()
        elif kind == 16:  # ALPN: list length, then length-prefixed names
            pos = 2
            while pos < len(data):
                alpn.append(data[pos + 1 : pos + 1 + data[pos]].decode())
                pos += 1 + data[pos]
    return sni, alpn


@pytest.fixture
def ingress_stand_in() -> Iterator[ClientHellos]:
    stand_in = ClientHellos()
    try:
        yield stand_in
    finally:
        stand_in.close()


def ingress_yaml(port: int, instances: int) -> str:
    document: dict[str, Any] = {
        "type": "ZoneIngress",
        "name": "zi-zone-2",
        "zone": "zone-2",
        "labels": {"kuma.io/origin": "global", "kuma.io/zone": "zone-2"},
        "networking": {
            "address": "127.0.0.1",
            "port": port,
            "advertisedAddress": "127.0.0.1",
            "advertisedPort": port,
        },
        "availableServices": [
            {
                "mesh": "default",
                "instances": instances,
                "tags": {"kuma.io/service": "backend", "kuma.io/zone": "zone-2"},
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


def backend_hosts(clusters: dict[str, Any]) -> list[tuple[int, int, str]]:
    """(port, weight, zone) of the hosts of the cluster ``backend``."""
    for status in clusters.get("cluster_statuses", []):
        if status["name"] == "backend":
            return [
                (
                    int(host["address"]["socket_address"]["port_value"]),
                    int(host.get("weight", 1)),
                    host.get("locality", {}).get("zone", ""),
                )
                for host in status.get("host_statuses", [])
            ]
    return []


def test_a_consumer_reaches_another_zones_ingress_with_kumas_sni(
    control_plane: ControlPlane, envoy_factory: EnvoyFactory, ingress_stand_in: ClientHellos
) -> None:
    cp = control_plane
    cp.put("mesh-default", mesh_yaml("STRICT"))
    cp.put("zi-zone-2", ingress_yaml(ingress_stand_in.port, instances=3))
    inbound, service_port, outbound = free_ports(3)
    cp.put(
        "web-1",
        dataplane_yaml(
            "web-1", inbounds=[(inbound, service_port, "web")], outbounds=[(outbound, "backend")]
        ),
    )
    web = envoy_factory(
        "default.web-1", "web", cp.dp_port, token=cp.token("default.web-1"), ca=cp.ca
    )
    web.wait_live()

    def hosts(wanted: list[tuple[int, int, str]]) -> bool:
        actual = backend_hosts(web.clusters())
        assert actual == wanted, f"backend hosts {actual}"
        return True

    # The only endpoint of backend: zone-2's ingress, weighing its 3 instances.
    port = ingress_stand_in.port
    eventually(lambda: hosts([(port, 3, "zone-2")]), "backend through zone-2's ingress")

    # A request through web's outbound goes to the ingress as mTLS, named as the ingress routes
    # (the stand-in closes: no answer, Envoy replies 503).
    def hello() -> tuple[str, list[str]] | None:
        with contextlib.suppress(OSError, ConnectionError):
            http_get(outbound, timeout=3)
        return ingress_stand_in.seen[-1] if ingress_stand_in.seen else None

    sni, alpn = eventually(hello, "a ClientHello at zone-2's ingress")
    assert sni == sni_from_tags({"kuma.io/service": "backend", "mesh": "default"})
    assert sni == "backend{mesh=default}"
    assert "kuma" in alpn

    # Zone-2 now has 5 instances: Envoy's weight follows; global removes it: no endpoint.
    cp.put("zi-zone-2", ingress_yaml(port, instances=5))
    eventually(lambda: hosts([(port, 5, "zone-2")]), "the ingress weighing 5")
    cp.delete("zi-zone-2")
    eventually(lambda: hosts([]), "no endpoint of backend")
