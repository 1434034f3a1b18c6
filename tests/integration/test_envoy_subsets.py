"""An outbound with tags beyond ``kuma.io/service`` reaches only the instances carrying them,
through real Envoys configured by a real kuma-cp: Kuma's cluster ``<service>-<hash>`` with
only the matching endpoints, beside the plain outbound that reaches every instance."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from kuma.xds.generate import destination_cluster_name
from tests.fixtures.envoy import (
    ControlPlane,
    EnvoyFactory,
    HttpService,
    free_ports,
    get_ok,
    http_get,
)

pytestmark = pytest.mark.envoy


def _dataplane(name: str, inbound: dict[str, Any], outbounds: list[dict[str, Any]]) -> str:
    networking: dict[str, Any] = {"address": "127.0.0.1", "inbound": [inbound]}
    if outbounds:
        networking["outbound"] = outbounds
    document = {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}
    return yaml.safe_dump(document, sort_keys=False)


def _served_by(port: int, requests: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(requests):
        status, body = http_get(port)
        assert status == 200, (status, body)
        seen[body] += 1
    return seen


def test_traffic_for_v1_reaches_only_v1(
    control_plane: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
) -> None:
    backends: dict[str, int] = {}
    for version in ("v1", "v2"):
        app = http_services(f"backend-{version}")
        (inbound,) = free_ports(1)
        tags = {"kuma.io/service": "backend", "kuma.io/protocol": "http", "version": version}
        name = f"backend-{version}"
        control_plane.put(
            name, _dataplane(name, {"port": inbound, "servicePort": app.port, "tags": tags}, [])
        )
        node = f"default.{name}"
        token, ca = control_plane.token(node), control_plane.ca
        envoy = envoy_factory(node, "backend", control_plane.dp_port, token=token, ca=ca)
        envoy.wait_live()
        envoy.wait_listener(f"inbound:127.0.0.1:{inbound}")
        backends[version] = inbound

    web_inbound, web_app, to_v1, to_all = free_ports(4)
    outbounds = [
        {"port": to_v1, "tags": {"kuma.io/service": "backend", "version": "v1"}},
        {"port": to_all, "tags": {"kuma.io/service": "backend"}},
    ]
    web_tags = {"kuma.io/service": "web", "kuma.io/protocol": "http"}
    control_plane.put(
        "web",
        _dataplane(
            "web", {"port": web_inbound, "servicePort": web_app, "tags": web_tags}, outbounds
        ),
    )
    token = control_plane.token("default.web")
    web = envoy_factory(
        "default.web", "web", control_plane.dp_port, token=token, ca=control_plane.ca
    )
    web.wait_live()
    subset = destination_cluster_name("backend", [("version", "v1")])
    assert subset == "backend-154693772bc47249"
    web.wait_endpoints(subset, {backends["v1"]})
    web.wait_endpoints("backend", {backends["v1"], backends["v2"]})
    for port in (to_v1, to_all):
        web.wait_listener(f"outbound:127.0.0.1:{port}")
        get_ok(port)

    assert _served_by(to_v1, 20) == {"backend-v1": 20}
    # The plain outbound still spreads over both versions (round robin).
    assert set(_served_by(to_all, 20)) == {"backend-v1", "backend-v2"}
    assert web.stat(f"cluster.{subset}.upstream_rq_200") >= 20
