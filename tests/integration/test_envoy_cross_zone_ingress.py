"""A service of zone-1 calls a service only zone-2 has, through zone-2's real ZoneIngress.

Two zone control planes (no global: what KDS would carry is copied by hand): zone-2 runs the
backend sidecar and the ingress (``kuma-dp run --proxy-type ingress``, zone token); its stored
ZoneIngress (zone, advertised address, availableServices written by zone-2's writer) is copied
into zone-1's store, and both zones share the mesh CA (as a global's CA reaches every zone). In
zone-1, web's sidecar gets the remote ingress as backend's endpoint (cross-zone EDS), opens the
mesh's mTLS with backend's SNI to it, and the ingress passes it through to zone-2's backend.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from kuma.resources import ZoneIngress, decode
from kuma_directory_store.files import is_resource_file
from tests.fixtures.envoy import (
    ControlPlane,
    EnvoyFactory,
    HttpService,
    eventually,
    free_ports,
    running,
)
from tests.fixtures.zone_proxy import start_zone_proxy, zone_proxy_yaml
from tests.integration.test_envoy_zone_ingress import (
    MESH,
    _stat,
    admin_post,
    answer,
    sidecar_yaml,
)
from tests.integration.test_mtls import ALLOW_ALL

pytestmark = pytest.mark.envoy


def stored_ingress(folder: Path) -> Path | None:
    """The ZoneIngress file of zone-2 once its writer listed backend."""
    for path in folder.iterdir():
        if not is_resource_file(path.name):
            continue
        for resource in decode(path.read_text()):
            if isinstance(resource, ZoneIngress) and any(
                s.tags.get("kuma.io/service") == "backend" for s in resource.available_services
            ):
                return path
    return None


def zone_cp(folder: Path, zone: str) -> ControlPlane:
    return ControlPlane(folder, {"KUMA_MODE": "zone", "KUMA_MULTIZONE_ZONE_NAME": zone})


def test_zone_1_reaches_zone_2_only_service_through_its_ingress(
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
    tmp_path: Path,
) -> None:
    zone_2 = zone_cp(tmp_path / "store-2", "zone-2")
    zone_1 = zone_cp(tmp_path / "store-1", "zone-1")
    inbound, ingress_port, ingress_admin, web_inbound, web_app, outbound = free_ports(6)
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.contextmanager(running)(zone_2))
        zone_2.put("mesh-default", MESH)
        zone_2.put("allow-all", ALLOW_ALL)
        app = http_services("backend-v1").port
        tags = {"kuma.io/service": "backend", "kuma.io/protocol": "tcp", "version": "v1"}
        zone_2.put("backend-v1", sidecar_yaml("backend-v1", inbound, app, **tags))
        node = "default.backend-v1"
        token = zone_2.token(node)
        backend = envoy_factory(node, "backend", zone_2.dp_port, token=token, ca=zone_2.ca)
        backend.wait_live()

        # zone-2's ingress, public at its advertised address.
        asked = {"zone": "zone-2", "scope": ["ingress"], "validFor": "1h"}
        token = eventually(lambda: admin_post(zone_2.api_port, "/tokens/zone", asked), "a token")
        document = zone_proxy_yaml(
            "ZoneIngress", "ingress-2", ingress_port, ingress_admin, advertised=True
        )
        ingress = start_zone_proxy("ingress", zone_2, tmp_path, "ingress-2", document, token)
        stack.callback(ingress.stop)
        listed = eventually(lambda: stored_ingress(zone_2.folder), "zone-2's ingress with backend")

        # What KDS would bring zone-1: the mesh, its CA (global's, shared) and zone-2's ingress.
        zone_1.folder.mkdir()
        for path in zone_2.folder.glob("secret-default-default.ca-builtin-*.yaml"):
            shutil.copy2(path, zone_1.folder / path.name)
        zone_1.put("mesh-default", MESH)
        zone_1.put("allow-all", ALLOW_ALL)
        shutil.copy2(listed, zone_1.folder / listed.name)
        stack.enter_context(contextlib.contextmanager(running)(zone_1))
        web_inbound_entry = {"port": web_inbound, "servicePort": web_app}
        web_networking = {
            "address": "127.0.0.1",
            "inbound": [{**web_inbound_entry, "tags": {"kuma.io/service": "web"}}],
            "outbound": [{"port": outbound, "tags": {"kuma.io/service": "backend"}}],
        }
        web_document = {"type": "Dataplane", "mesh": "default", "name": "web"}
        zone_1.put("web", yaml.safe_dump({**web_document, "networking": web_networking}))
        node = "default.web"
        web = envoy_factory(node, "web", zone_1.dp_port, token=zone_1.token(node), ca=zone_1.ca)
        web.wait_live()
        # zone-1 has no backend of its own: an answer can only come through zone-2's ingress.
        reached = eventually(lambda: answer(outbound), "backend from zone-1 through zone-2")
        assert reached == "backend-v1"
        stat = f"listener.127.0.0.1_{ingress_port}.downstream_cx_total"
        assert _stat(ingress_admin, stat) >= 1
