"""Real traffic across zones: zone-1's web sidecar reaches ``backend``, which only zone-2 has,
through zone-2's real ZoneIngress (``kuma-dp run --proxy-type ingress``).

Two zone control planes on their own directory stores, without a global: what global would
send zone-1 (the mesh's CA, so both zones' certificates chain to one root, and zone-2's
ZoneIngress labelled ``kuma.io/origin: global``, with the availableServices zone-2's writer
filled) is copied into zone-1's store (KDS itself is tested in tests/multizone). zone-1's engine
makes the ingress the endpoint of ``backend`` in web's ClusterLoadAssignment; web's Envoy
originates the mesh's mTLS with SNI ``backend{mesh=default}``; the ingress passes it through
to zone-2's backend sidecar, which answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuma.resources import Secret, ZoneIngress, encode_yaml
from tests.fixtures.envoy import (
    ControlPlane,
    Envoy,
    EnvoyFactory,
    HttpService,
    dataplane_yaml,
    eventually,
    free_ports,
    running,
)
from tests.fixtures.zone_proxy import start_zone_proxy, zone_proxy_yaml
from tests.integration.test_envoy_zone_ingress import MESH, admin_post, answer, sidecar_yaml
from tests.integration.test_mtls import ALLOW_ALL

pytestmark = [pytest.mark.envoy, pytest.mark.slow]


def zone(tmp_path: Path, name: str) -> Iterator[ControlPlane]:
    env = {"KUMA_MODE": "zone", "KUMA_MULTIZONE_ZONE_NAME": name}
    yield from running(ControlPlane(tmp_path / f"store-{name}", extra_env=env))


@pytest.fixture
def zone_1(tmp_path: Path) -> Iterator[ControlPlane]:
    yield from zone(tmp_path, "zone-1")


@pytest.fixture
def zone_2(tmp_path: Path) -> Iterator[ControlPlane]:
    yield from zone(tmp_path, "zone-2")


def stored(cp: ControlPlane) -> dict[str, Any]:
    return {r.name: r for r in cp.stored()}


def web_calling_backend(
    zone: ControlPlane,
    envoy_factory: EnvoyFactory,
    inbound: int,
    app: int,
    outbound: int,
    *others: tuple[int, str],
) -> Envoy:
    """A live ``web`` sidecar in ``zone`` with an outbound to ``backend`` on ``outbound`` (and
    to each (port, service) of ``others``)."""
    zone.put(
        "web-1",
        dataplane_yaml(
            "web-1", inbounds=[(inbound, app, "web")], outbounds=[(outbound, "backend"), *others]
        ),
    )
    node = "default.web-1"
    web = envoy_factory(node, "web", zone.dp_port, token=zone.token(node), ca=zone.ca)
    web.wait_live()
    return web


def test_zone_1_reaches_zone_2s_service_through_its_ingress(
    zone_1: ControlPlane,
    zone_2: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
    tmp_path: Path,
) -> None:
    # zone-2: the mesh, a backend sidecar, its ingress.
    zone_2.put("mesh-default", MESH)
    zone_2.put("allow-all", ALLOW_ALL)
    inbound, ingress_port, ingress_admin, web_inbound, web_app, outbound = free_ports(6)
    app = http_services("backend-in-zone-2").port
    tags = {"kuma.io/service": "backend", "kuma.io/protocol": "http"}
    zone_2.put("backend-1", sidecar_yaml("backend-1", inbound, app, **tags))
    node = "default.backend-1"
    backend = envoy_factory(node, "backend", zone_2.dp_port, token=zone_2.token(node), ca=zone_2.ca)
    backend.wait_live()
    token = eventually(
        lambda: admin_post(
            zone_2.api_port,
            "/tokens/zone",
            {"zone": "zone-2", "scope": ["ingress"], "validFor": "1h"},
        ),
        "a zone token",
    )
    ingress = start_zone_proxy(
        "ingress",
        zone_2,
        tmp_path,
        "ingress-1",
        zone_proxy_yaml("ZoneIngress", "ingress-1", ingress_port, ingress_admin, advertised=True),
        token,
    )
    try:

        def listed() -> ZoneIngress | None:
            found = stored(zone_2).get("ingress-1")
            if isinstance(found, ZoneIngress) and found.available_services:
                return found
            return None

        listed_ingress = eventually(listed, "zone-2's ingress listing backend")
        assert listed_ingress.zone == "zone-2"
        cas = {
            n: r
            for n, r in stored(zone_2).items()
            if isinstance(r, Secret) and n.startswith("default.ca-builtin-")
        }
        assert len(cas) == 2

        # zone-1 gets what global would send: the mesh CA first, then the mesh, the ingress.
        for name, secret in cas.items():
            zone_1.put(name, encode_yaml([secret]))
        zone_1.put("mesh-default", MESH)
        zone_1.put("allow-all", ALLOW_ALL)
        labels = {**listed_ingress.labels, "kuma.io/origin": "global", "kuma.io/zone": "zone-2"}
        document = yaml.safe_load(encode_yaml([listed_ingress]))
        document["labels"] = labels
        zone_1.put("ingress-zone-2", yaml.safe_dump(document, sort_keys=False))

        web = web_calling_backend(zone_1, envoy_factory, web_inbound, web_app, outbound)
        web.wait_endpoints("backend", {ingress_port})
        assert eventually(
            lambda: answer(outbound), "backend's answer through zone-2's ingress"
        ) == ("backend-in-zone-2")
    finally:
        ingress.stop()
