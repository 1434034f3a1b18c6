"""The whole path across real processes: a global and two federated zones over KDS. zone-2's
ZoneIngress (``kuma-dp run --proxy-type ingress``) registers on zone-2, goes up to global with
the availableServices zone-2's writer keeps, and down to zone-1 only; zone-1's web sidecar then
reaches ``backend``, which only zone-2 has, through that ingress (the mesh, its CA and the
permission authored on global reach both zones). With backend in zone-1 too and the mesh's
``localityAwareLoadBalancing`` on, zone-1's own instance answers (Kuma's local preference).
Between the two, global is killed: traffic keeps flowing, a zone serves a local change at once,
and after global restarts only what changed travels. With the mesh's ``routing.zoneEgress`` on,
zone-1's web reaches zone-2's backend through zone-1's own ZoneEgress (``kuma-dp run
--proxy-type egress``), which passes the TLS on to zone-2's ingress: its Envoy's counters show
the connection. An ExternalService tagged ``kuma.io/zone: zone-2`` goes egress → ingress →
zone-2's egress, which calls it."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from kuma.processes import free_port
from kuma.resources import ZoneIngress
from tests.fixtures.envoy import (
    ControlPlane,
    EnvoyFactory,
    HttpService,
    eventually,
    free_ports,
    http_get,
    running,
)
from tests.fixtures.zone_proxy import start_zone_proxy, zone_proxy_yaml
from tests.integration.test_cross_zone_traffic import web_calling_backend
from tests.integration.test_envoy_zone_egress import _external
from tests.integration.test_envoy_zone_ingress import (
    MESH,
    _stat,
    admin_post,
    answer,
    sidecar_yaml,
)
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
    found = cp.stored()
    return [r for r in found if isinstance(r, ZoneIngress)]


def backend_instances(cp: ControlPlane) -> int:
    """``backend``'s instances in the ingress ``cp`` holds (the zone's own or global's copy)."""
    return sum(
        s.instances
        for i in ingresses(cp)
        for s in i.available_services
        if s.tags.get("kuma.io/service") == "backend"
    )


def kill(cp: ControlPlane) -> None:
    """SIGKILL by PID, as a crash: nothing is closed or written on the way out."""
    cp.running.signal(signal.SIGKILL)
    cp.running.wait()
    assert cp.stop() == -signal.SIGKILL


def sent_since_reconnect(zone: ControlPlane) -> list[str]:
    """What global sent ``zone`` since its last (re)connection (the receiver logs one line per
    response carrying resources)."""
    tail = zone.running.output().rsplit("KDS: following global", 1)[1]
    return [line.split("KDS: ", 1)[1] for line in tail.splitlines() if "KDS: global sent" in line]


def received(glob: ControlPlane, peer: str) -> list[str]:
    """What ``peer`` sent global since global started (one line per response with resources),
    insights left out: they are status that changes on its own while global is down (a new
    connection, counters; kuma/kds/insight_sync.py), so they legitimately travel too."""
    mark = f"KDS: {peer} sent "
    lines = [line.split(mark, 1)[1] for line in glob.running.output().splitlines() if mark in line]
    return [line for line in lines if "Insight," not in line]


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
    ingress = start_zone_proxy(
        "ingress",
        zone_2,
        tmp_path,
        "ingress-1",
        zone_proxy_yaml("ZoneIngress", "ingress-1", ingress_port, ingress_admin, advertised=True),
        zone_token(glob, "zone-2", ["ingress"]),
    )
    try:
        # Through global: zone-1 holds zone-2's ingress with its list; zone-2 holds only its own.
        def arrived() -> ZoneIngress | None:
            held = [i for i in ingresses(zone_1) if i.available_services]
            return held[0] if held else None

        remote = eventually(arrived, "zone-2's ingress on zone-1", timeout=60)
        assert remote.zone == "zone-2"
        assert remote.labels["kuma.io/origin"] == "global"
        assert [i.name for i in ingresses(zone_2)] == ["ingress-1"]

        web = web_calling_backend(zone_1, envoy_factory, web_inbound, web_app, outbound)
        web.wait_endpoints("backend", {ingress_port})
        body = eventually(lambda: answer(outbound), "backend's answer through zone-2's ingress")
        assert body == "backend-in-zone-2"

        # Global dies: the zones keep serving what they hold, and a zone serves a local change
        # at once (a new backend instance in zone-2 reaches zone-2's ingress and its list).
        kill(glob)
        zone_1.running.wait_for_line("KDS: connection to global at", timeout=30)
        assert eventually(lambda: answer(outbound), "an answer with global down") == body
        added_inbound = free_ports(1)[0]
        added_app = http_services("added-in-zone-2").port

        def ingress_clusters() -> str:
            return http_get(ingress_admin, "/clusters")[1]

        zone_2.put("backend-3", sidecar_yaml("backend-3", added_inbound, added_app, **tags))
        node = "default.backend-3"
        added = envoy_factory(
            node, "backend", zone_2.dp_port, token=zone_2.token(node), ca=zone_2.ca
        )
        added.wait_live()
        eventually(lambda: backend_instances(zone_2) == 2, "2 instances in zone-2's ingress")
        # The ingress (a zone-2 proxy) load-balances connections, and web's one connection stays
        # on backend-1: its Envoy config shows the new endpoint.
        eventually(
            lambda: f"default:backend::127.0.0.1:{added_inbound}::" in ingress_clusters(),
            "zone-2's new instance in zone-2's ingress's Envoy",
        )
        assert backend_instances(zone_1) == 1  # global's copy: global is down
        assert glob.process is None

        # Global comes back on its store: the zones reconnect declaring what they hold and only
        # zone-2's changed ingress travels down to zone-1 (nothing unchanged is resent).
        reconnects = zone_1.running.count("KDS: following global")
        glob.start()
        eventually(
            lambda: zone_1.running.count("KDS: following global") > reconnects, "zone-1 reconnected"
        )
        eventually(lambda: backend_instances(zone_1) == 2, "zone-2's new ingress on zone-1")
        # The ingress travels in parts (kuma/kds/parts.py): only backend's changed entry.
        assert sent_since_reconnect(zone_1) == ["global sent 1 ZoneIngressService, 0 removed"]
        # zone-2 sent global only its new Dataplane and backend's changed entry; global sent
        # zone-2 nothing (its own ingress is withheld from it, the rest is unchanged).
        eventually(lambda: len(received(glob, "zone zone-2")) >= 2, "zone-2's two changes")
        assert sorted(received(glob, "zone zone-2")) == [
            "1 Dataplane, 0 removed",
            "1 ZoneIngressService, 0 removed",
        ]
        assert received(glob, "zone zone-1") == []
        assert sent_since_reconnect(zone_2) == []

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

        # zone-2 disabled on global: its ingress is withdrawn from zone-1 (Kuma's
        # GlobalProvidedFilter, kuma/kds/zone_gate.py), so web keeps only the local endpoint;
        # enabled again, it comes back.
        # (The file global wrote the Zone to at zone-2's first connection: one file per key.)
        glob.put("zone-zone-2", "type: Zone\nname: zone-2\nenabled: false\n")
        eventually(lambda: not ingresses(zone_1), "zone-2's ingress withdrawn from zone-1")
        web.wait_endpoints("backend", {local_inbound})
        glob.put("zone-zone-2", "type: Zone\nname: zone-2\nenabled: true\n")
        eventually(lambda: backend_instances(zone_1) == 2, "zone-2's ingress back on zone-1")
        web.wait_endpoints("backend", {ingress_port, local_inbound})
    finally:
        ingress.stop()


def test_traffic_to_another_zone_goes_through_the_local_zone_egress(
    glob: ControlPlane,
    zone_1: ControlPlane,
    zone_2: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
    tmp_path: Path,
) -> None:
    glob.put("mesh-default", MESH + "routing:\n  zoneEgress: true\n")
    glob.put("allow-all", ALLOW_ALL)
    # An ExternalService only zone-2 reaches (its kuma.io/zone): Kuma's egress → ingress → egress.
    outside = http_services("outside-of-zone-2").port
    external = _external("outside", outside)
    external["tags"]["kuma.io/zone"] = "zone-2"
    glob.put("es-outside", yaml.safe_dump(external))
    ports = free_ports(11)
    inbound, ingress_port, ingress_admin, egress_port, egress_admin = ports[:5]
    web_inbound, web_app, outbound, to_outside, egress_2_port, egress_2_admin = ports[5:]
    app = http_services("backend-in-zone-2").port
    tags = {"kuma.io/service": "backend", "kuma.io/protocol": "http"}
    zone_2.put("backend-1", sidecar_yaml("backend-1", inbound, app, **tags))
    node = "default.backend-1"
    backend = envoy_factory(node, "backend", zone_2.dp_port, token=zone_2.token(node), ca=zone_2.ca)
    backend.wait_live()
    ingress = start_zone_proxy(
        "ingress",
        zone_2,
        tmp_path,
        "ingress-1",
        zone_proxy_yaml("ZoneIngress", "ingress-1", ingress_port, ingress_admin, advertised=True),
        zone_token(glob, "zone-2", ["ingress"]),
    )
    egress = start_zone_proxy(
        "egress",
        zone_1,
        tmp_path,
        "egress-1",
        zone_proxy_yaml("ZoneEgress", "egress-1", egress_port, egress_admin),
        zone_token(glob, "zone-1", ["egress"]),
    )
    egress_2 = start_zone_proxy(
        "egress",
        zone_2,
        tmp_path,
        "egress-2",
        zone_proxy_yaml("ZoneEgress", "egress-2", egress_2_port, egress_2_admin),
        zone_token(glob, "zone-2", ["egress"]),
    )
    try:
        eventually(
            lambda: len([s for i in ingresses(zone_1) for s in i.available_services]) == 2,
            "zone-2's ingress on zone-1, listing backend and outside",
            timeout=60,
        )
        web = web_calling_backend(
            zone_1, envoy_factory, web_inbound, web_app, outbound, (to_outside, "outside")
        )
        # web's only endpoint of backend is zone-1's egress, not zone-2's ingress.
        web.wait_endpoints("backend", {egress_port})
        body = eventually(lambda: answer(outbound), "backend's answer through zone-1's egress")
        assert body == "backend-in-zone-2"
        # The connection went through the egress's passthrough chain to zone-2's ingress (its
        # cluster ``default:backend``), then through the ingress.
        assert _stat(egress_admin, "cluster.default_backend.upstream_cx_total") >= 1
        assert _stat(egress_admin, "tcp.default_backend.downstream_cx_total") >= 1
        assert _stat(ingress_admin, "tcp.default_backend.downstream_cx_total") >= 1
        # The egress holds no TLS of its own for it: web's handshake was with backend itself
        # (SAN spiffe://default/backend, checked by web's cluster), so the answer proves it.

        # outside (tagged zone-2): zone-1's egress passes it to zone-2's ingress, which passes
        # it to zone-2's egress, which terminates the mesh's mTLS and calls the server.
        web.wait_endpoints("outside", {egress_port})
        assert eventually(lambda: answer(to_outside), "outside through both egresses") == (
            "outside-of-zone-2"
        )
        assert _stat(egress_admin, "tcp.default_outside.downstream_cx_total") >= 1
        assert _stat(ingress_admin, "tcp.default_outside.downstream_cx_total") >= 1
        assert _stat(egress_2_admin, "cluster.default_outside.upstream_rq_total") >= 1
    finally:
        codes = [egress.stop(), egress_2.stop(), ingress.stop()]
    assert codes == [0, 0, 0], egress.output()
