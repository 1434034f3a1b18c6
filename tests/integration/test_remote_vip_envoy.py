"""A service only another zone has, in a real Envoy: a zone-1 kuma-cp (zone mode, directory
store) holds zone-2's ZoneIngress listing ``backend``, and no Dataplane of backend. Its VIP
allocator gives backend a VIP and web's transparent-proxy Envoy answers ``backend.mesh`` on
its DNS listener with that VIP and has the VIP's outbound listener (kuma/cp/vips.py,
kuma/xds/engine/handlers/remote_services.py); the ingress's removal takes both away."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import pytest
import yaml

from tests.fixtures.envoy import (
    ControlPlane,
    Envoy,
    dataplane_yaml,
    eventually,
    free_ports,
    running,
)
from tests.integration.test_cross_zone_envoy import ingress_yaml
from tests.integration.test_mtls import mesh_yaml

pytestmark = pytest.mark.envoy


def transparent(document: str) -> str:
    parsed: dict[str, Any] = yaml.safe_load(document)
    parsed["networking"]["transparentProxying"] = {
        "redirectPortInbound": 15006,
        "redirectPortOutbound": 15001,
    }
    return yaml.safe_dump(parsed, sort_keys=False)


def answer(dns_port: int, name: str) -> str | None:
    """The A record Envoy's DNS listener gives ``name`` (None: no answer yet)."""
    query = dns.message.make_query(name, dns.rdatatype.A)
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=0.5)
    except dns.exception.Timeout:
        return None
    for rrset in reply.answer:
        for record in rrset:
            return str(record.address)
    return None


@pytest.fixture
def zone_1(tmp_path: Path) -> Iterator[ControlPlane]:
    """A zone kuma-cp of its own (no global: the test writes what global would send)."""
    env = {"KUMA_MODE": "zone", "KUMA_MULTIZONE_ZONE_NAME": "zone-1"}
    yield from running(ControlPlane(tmp_path / "store", env))


def test_a_zone_2_only_service_gets_a_vip_and_a_mesh_name(
    zone_1: ControlPlane, tmp_path: Path
) -> None:
    cp = zone_1
    inbound, service_port, ingress_port, dns_port = free_ports(4)
    cp.put("mesh-default", mesh_yaml("STRICT"))
    cp.put("zi-zone-2", ingress_yaml(ingress_port, instances=2))
    web_yaml = dataplane_yaml("web-1", inbounds=[(inbound, service_port, "web")])
    cp.put("web-1", transparent(web_yaml))
    web = Envoy(
        tmp_path,
        "default.web-1",
        "web",
        cp.dp_port,
        token=cp.token("default.web-1"),
        ca=cp.ca,
        metadata={"dataplane.dns.port": str(dns_port)},  # as kuma-dp sends it
    )
    try:
        web.wait_live()
        vip = eventually(lambda: answer(dns_port, "backend.mesh"), "backend.mesh answered")
        assert ipaddress.ip_address(vip) in ipaddress.ip_network("240.0.0.0/4")
        web.wait_listener(f"outbound:{vip}:80")
        # Its endpoint is zone-2's ingress (cross-zone endpoints, the same CLA as ever).
        assert web.endpoints("backend") == {ingress_port}

        # zone-2 no longer lists it: the VIP's outbound goes (and the name with it).
        cp.delete("zi-zone-2")

        def gone() -> bool:
            listeners = web.listeners()
            assert f"outbound:{vip}:80" not in listeners, sorted(listeners)
            return True

        eventually(gone, "backend's VIP outbound removed")
    finally:
        assert web.stop() == 0
