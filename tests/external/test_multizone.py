"""Real processes: an ExternalService and its Secret authored on a global kuma-cp reach a
federated zone over KDS; the zone refuses to author one; a Dataplane of the zone with an
outbound to it is served its cluster (the zone's config dump)."""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path
from typing import Any

from kuma.kds.mapping import hashed_name
from kuma.multizone import ZONE_READ_ONLY_MESSAGE
from kuma.processes import free_port
from tests.external.documents import HTTPBIN
from tests.multizone.test_kds_processes import (
    control_plane,
    eventually,
    global_env,
    has,
    zone_env,
)

CA = b"-----BEGIN CERTIFICATE-----\nGLOBALCA\n-----END CERTIFICATE-----\n"
SECRET = f"type: Secret\nmesh: default\nname: httpbin-ca\ndata: {base64.b64encode(CA).decode()}\n"
WEB = """\
type: Dataplane
mesh: default
name: web-01
networking:
  address: 127.0.0.1
  inbound:
  - port: 18080
    servicePort: 8080
    tags: {kuma.io/service: web}
  outbound:
  - port: 20000
    tags: {kuma.io/service: httpbin}
"""


def _httpbin_cluster(url: str) -> dict[str, Any] | None:
    with urllib.request.urlopen(f"{url}/meshes/default/dataplanes/web-01/xds") as reply:
        dump = json.load(reply)
    for config in dump["configs"]:
        for entry in config.get("dynamicActiveClusters", []):
            if entry["cluster"]["name"] == "httpbin":
                cluster: dict[str, Any] = entry["cluster"]
                return cluster
    return None


def test_global_authors_it_and_a_zone_serves_it(tmp_path: Path) -> None:
    kds_port = free_port()
    for folder in ("global-store", "global-work", "zone-1-store"):
        (tmp_path / folder).mkdir()
    on_zone_name = hashed_name("default", "httpbin")
    with control_plane(global_env(tmp_path, kds_port)) as (_, on_global, _url):
        eventually(has(on_global, "get", "meshes", text="default"), "the default mesh on global")
        on_global.ok("apply", "-f", "-", stdin=SECRET)
        on_global.ok("apply", "-f", "-", stdin=HTTPBIN)
        token = on_global.ok("generate", "zone-token", "--zone", "zone-1", "--valid-for", "1h")
        env = zone_env(tmp_path, "zone-1", kds_port, token.strip())
        with control_plane(env) as (zone, on_zone, zone_url):
            eventually(
                has(on_zone, "get", "external-services", "-m", "default", text=on_zone_name),
                "the ExternalService on the zone",
            )
            refused = on_zone("apply", "-f", "-", stdin=HTTPBIN)
            assert refused.code == 1
            assert ZONE_READ_ONLY_MESSAGE in refused.err

            on_zone.ok("apply", "-f", "-", stdin=WEB)

            def served() -> bool:
                cluster = _httpbin_cluster(zone_url)
                return cluster is not None and cluster.get("type") == "STRICT_DNS"

            eventually(served, "web-01's httpbin cluster on the zone")
            cluster = _httpbin_cluster(zone_url)
            assert cluster is not None
            (match,) = cluster["transportSocketMatches"]
            context = match["transportSocket"]["typedConfig"]
            assert context["sni"] == "httpbin.org"
            trusted = context["commonTlsContext"]["validationContext"]["trustedCa"]
            assert base64.b64decode(trusted["inlineBytes"]) == CA
            assert "GLOBALCA" not in zone.output()
