"""The whole path across real processes: a global and two federated zones over KDS. zone-2's
ZoneIngress (``kuma-dp run --proxy-type ingress``) registers on zone-2, goes up to global with
the availableServices zone-2's writer keeps, and down to zone-1 only; zone-1's web sidecar then
reaches ``backend``, which only zone-2 has, through that ingress (the mesh, its CA and the
permission authored on global reach both zones). With backend in zone-1 too and the mesh's
``localityAwareLoadBalancing`` on, zone-1's own instance answers (Kuma's local preference)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kuma.processes import free_port
from kuma.resources import ZoneIngress, decode
from tests.fixtures.envoy import (
    ControlPlane,
    EnvoyFactory,
    HttpService,
    dataplane_yaml,
    eventually,
    free_ports,
    running,
)
from tests.fixtures.processes import ManagedProcess
from tests.integration.test_envoy_zone_ingress import MESH, admin_post, answer, sidecar_yaml
from tests.integration.test_mtls import ALLOW_ALL

pytestmark = [pytest.mark.envoy, pytest.mark.slow]
KDS_PORT = free_port()


@pytest.fixture
def glob(tmp_path: Path) -> Iterator[ControlPlane]:
    env = {"KUMA_MODE": "global", "KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT": str(KDS_PORT)}
    yield from running(ControlPlane(tmp_path / "global", extra_env=env))


def zone_token(glob: ControlPlane, zone: str, scope: list[str]) -> str:
    body = {"zone": zone, "scope": scope, "validFor": "1h"}
    return eventually(lambda: admin_post(glob.api_port, "/tokens/zone", body), f"a {zone} token")


def federated(glob: ControlPlane, tmp_path: Path, zone: str) -> Iterator[ControlPlane]:
    root_ca = tmp_path / "global.crt"
    root_ca.write_text(glob.ca)
    token = tmp_path / f"{zone}.token"
    token.write_text(zone_token(glob, zone, ["ingress", "egress"]))
    token.chmod(0o600)
    env = {
        "KUMA_MODE": "zone",
        "KUMA_MULTIZONE_ZONE_NAME": zone,
        "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS": f"grpcs://127.0.0.1:{KDS_PORT}",
        "KUMA_MULTIZONE_ZONE_KDS_ROOT_CA_FILE": str(root_ca),
        "KUMA_MULTIZONE_ZONE_KDS_ZONE_TOKEN_FILE": str(token),
    }
    yield from running(ControlPlane(tmp_path / zone, extra_env=env))


@pytest.fixture
def zone_1(glob: ControlPlane, tmp_path: Path) -> Iterator[ControlPlane]:
    yield from federated(glob, tmp_path, "zone-1")


@pytest.fixture
def zone_2(glob: ControlPlane, tmp_path: Path) -> Iterator[ControlPlane]:
    yield from federated(glob, tmp_path, "zone-2")


def ingresses(cp: ControlPlane) -> list[ZoneIngress]:
    found = [r for p in cp.folder.glob("*.yaml") for r in decode(p.read_text())]
    return [r for r in found if isinstance(r, ZoneIngress)]


def test_traffic_crosses_zones_through_zone_2s_ingress(
    glob: ControlPlane,
    zone_1: ControlPlane,
    zone_2: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
    tmp_path: Path,
) -> None:
    glob.put("mesh-default", MESH)
    glob.put("allow-all", ALLOW_ALL)
    inbound, ingress_port, ingress_admin, web_inbound, web_app, outbound = free_ports(6)
    app = http_services("backend-in-zone-2").port
    tags = {"kuma.io/service": "backend", "kuma.io/protocol": "http"}
    zone_2.put("backend-1", sidecar_yaml("backend-1", inbound, app, **tags))
    node = "default.backend-1"
    backend = envoy_factory(node, "backend", zone_2.dp_port, token=zone_2.token(node), ca=zone_2.ca)
    backend.wait_live()
    (tmp_path / "ingress.token").write_text(zone_token(glob, "zone-2", ["ingress"]))
    (tmp_path / "ingress.yaml").write_text(
        f"type: ZoneIngress\nname: ingress-1\nnetworking:\n  address: 127.0.0.1\n"
        f"  port: {ingress_port}\n  advertisedAddress: 127.0.0.1\n"
        f"  advertisedPort: {ingress_port}\n  admin:\n    port: {ingress_admin}\n"
    )
    (tmp_path / "zone-2.crt").write_text(zone_2.ca)
    ingress = ManagedProcess(
        [sys.executable, "-m", "kuma.dp.cli", "run", "--proxy-type", "ingress",
         "--cp-address", f"https://127.0.0.1:{zone_2.dp_port}",
         "-d", str(tmp_path / "ingress.yaml"),
         "--dataplane-token-file", str(tmp_path / "ingress.token"),
         "--ca-cert-file", str(tmp_path / "zone-2.crt"), "--concurrency", "1", "--drain-time", "1s"]
    )  # fmt: skip
    try:
        # Through global: zone-1 holds zone-2's ingress with its list; zone-2 holds only its own.
        def arrived() -> ZoneIngress | None:
            held = [i for i in ingresses(zone_1) if i.available_services]
            return held[0] if held else None

        remote = eventually(arrived, "zone-2's ingress on zone-1", timeout=60)
        assert remote.zone == "zone-2"
        assert remote.labels["kuma.io/origin"] == "global"
        assert [i.name for i in ingresses(zone_2)] == ["ingress-1"]

        zone_1.put(
            "web-1",
            dataplane_yaml(
                "web-1", inbounds=[(web_inbound, web_app, "web")], outbounds=[(outbound, "backend")]
            ),
        )
        node = "default.web-1"
        web = envoy_factory(node, "web", zone_1.dp_port, token=zone_1.token(node), ca=zone_1.ca)
        web.wait_live()
        web.wait_endpoints("backend", {ingress_port})
        body = eventually(lambda: answer(outbound), "backend's answer through zone-2's ingress")
        assert body == "backend-in-zone-2"

        # backend in zone-1 too, and the mesh (on global) prefers local endpoints, as Kuma's
        # localityAwareLoadBalancing: other zones at priority 1, so every answer is local.
        glob.put("mesh-default", MESH + "routing:\n  localityAwareLoadBalancing: true\n")
        local_inbound = free_ports(1)[0]
        local_app = http_services("backend-in-zone-1").port
        zone_1.put("backend-2", sidecar_yaml("backend-2", local_inbound, local_app, **tags))
        node = "default.backend-2"
        local = envoy_factory(
            node, "backend", zone_1.dp_port, token=zone_1.token(node), ca=zone_1.ca
        )
        local.wait_live()
        web.wait_endpoints("backend", {ingress_port, local_inbound})

        def priorities() -> bool:
            for status in web.clusters().get("cluster_statuses", []):
                if status["name"] == "backend":
                    found = {
                        int(h["address"]["socket_address"]["port_value"]): h.get("priority", 0)
                        for h in status.get("host_statuses", [])
                    }
                    assert found == {local_inbound: 0, ingress_port: 1}, found
                    return True
            return False

        eventually(priorities, "zone-2's ingress at priority 1")
        assert {answer(outbound) for _ in range(10)} == {"backend-in-zone-1"}
    finally:
        ingress.stop()
