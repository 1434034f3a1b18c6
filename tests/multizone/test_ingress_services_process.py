"""A real zone kuma-cp keeps its ZoneIngress's availableServices: one write per change, the
zone's tag on the entries, the entry gone with its last instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fixtures.envoy import eventually

from .test_kds_processes import control_plane, dataplane, get_json

INGRESS = """\
type: ZoneIngress
name: ingress-1
zone: zone-1
networking:
  address: 127.0.0.1
  port: 10001
"""


def web(name: str, port: int) -> str:
    """A Dataplane of service ``web`` (every instance the same service)."""
    return dataplane(name, port).replace(f"kuma.io/service: {name}", "kuma.io/service: web")


def test_a_zone_lists_its_services_on_its_ingress(tmp_path: Path) -> None:
    env = {"KUMA_MODE": "zone", "KUMA_MULTIZONE_ZONE_NAME": "zone-1"}
    with control_plane(env) as (process, kumactl, url):

        def listed() -> list[dict[str, Any]]:
            document = get_json(f"{url}/zoneingresses/ingress-1")
            return list(document.get("availableServices", []))

        def entry(instances: int) -> list[dict[str, Any]]:
            tags = {"kuma.io/service": "web", "kuma.io/zone": "zone-1"}
            return [{"tags": tags, "instances": instances, "mesh": "default"}]

        kumactl.ok("apply", "-f", "-", stdin=INGRESS)
        kumactl.ok("apply", "-f", "-", stdin=web("web-1", 18080))
        eventually(lambda: listed() == entry(1), "web listed once")
        kumactl.ok("apply", "-f", "-", stdin=web("web-2", 18081))
        eventually(lambda: listed() == entry(2), "web listed with two instances")
        kumactl.ok("delete", "dataplane", "web-1", "-m", "default")
        eventually(lambda: listed() == entry(1), "one instance left")
        kumactl.ok("delete", "dataplane", "web-2", "-m", "default")
        eventually(lambda: listed() == [], "the entry gone with its last instance")
        # One write per change (the ingress's own creation listed nothing: no write). The
        # writer logs after its write returns, so the last line may trail the state we saw.
        line = "updated ZoneIngress available services"
        eventually(lambda: process.count(line) >= 4, "the fourth write logged")
        assert process.count(line) == 4, process.output()
