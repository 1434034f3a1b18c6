"""MeshHTTPRoute and MeshTCPRoute on real Envoys configured by a real kuma-cp: an 80/20
weighted split over two version subsets of a service, measured at the backends; a header
match sends every request to v2; a MeshTCPRoute splits TCP connections the same way.

Tolerances (binomial): Envoy picks a weighted cluster at random per request (HTTP) or per
connection (TCP). For n requests with share p the count's standard deviation is
sqrt(n p (1-p)): n=500, p=0.8 gives 8.9 requests = 1.8 percentage points, so ±7 points is
3.9 standard deviations (a false failure about once in 10,000 runs); TCP uses n=200:
2.8 points, ±10 points is 3.5 standard deviations (about 5 in 10,000)."""

from __future__ import annotations

import http.client
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from kuma.xds.generate import destination_cluster_name
from tests.fixtures.envoy import ControlPlane, EnvoyFactory, HttpService, free_ports, get_ok

pytestmark = pytest.mark.envoy

SPLIT = [
    {"kind": "MeshServiceSubset", "name": "{svc}", "tags": {"version": "v1"}, "weight": 80},
    {"kind": "MeshServiceSubset", "name": "{svc}", "tags": {"version": "v2"}, "weight": 20},
]


def _refs(service: str, *weights: int) -> list[dict[str, Any]]:
    return [{**ref, "name": service} for ref, weight in zip(SPLIT, weights, strict=True) if weight]


def _get(port: int, headers: dict[str, str] | None = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Connection": "close", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _served(port: int, requests: int, headers: dict[str, str] | None = None) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(requests):
        status, body = _get(port, headers)
        assert status == 200, (status, body)
        seen[body] += 1
    return seen


def _document(kind: str, name: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump({"type": kind, "mesh": "default", "name": name, "spec": spec})


def test_http_split_header_match_and_tcp_split(
    control_plane: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
) -> None:
    # Each backend instance serves one app behind two inbounds: service "backend" (http) and
    # service "backend-tcp" (tcp), each tagged with the instance's version.
    inbounds: dict[str, tuple[int, int]] = {}
    for version in ("v1", "v2"):
        app = http_services(f"backend-{version}")
        http_in, tcp_in = free_ports(2)
        inbounds[version] = (http_in, tcp_in)
        networking = {
            "address": "127.0.0.1",
            "inbound": [
                {
                    "port": port,
                    "servicePort": app.port,
                    "tags": {
                        "kuma.io/service": svc,
                        "kuma.io/protocol": protocol,
                        "version": version,
                    },
                }
                for port, svc, protocol in (
                    (http_in, "backend", "http"),
                    (tcp_in, "backend-tcp", "tcp"),
                )
            ],
        }
        name = f"backend-{version}"
        control_plane.put(
            name,
            yaml.safe_dump(
                {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}
            ),
        )
        node = f"default.{name}"
        envoy = envoy_factory(
            node,
            "backend",
            control_plane.dp_port,
            token=control_plane.token(node),
            ca=control_plane.ca,
        )
        envoy.wait_live()

    # The routes exist before the client connects: its first config already routes.
    all_paths = {"path": {"type": "PathPrefix", "value": "/"}}
    http_rules = [
        {"matches": [all_paths], "default": {"backendRefs": _refs("backend", 80, 20)}},
        {
            "matches": [{**all_paths, "headers": [{"name": "x-version", "value": "v2"}]}],
            "default": {"backendRefs": _refs("backend", 0, 1)},
        },
    ]
    tcp_rules = [{"default": {"backendRefs": _refs("backend-tcp", 80, 20)}}]
    for kind, service, rules in (
        ("MeshHTTPRoute", "backend", http_rules),
        ("MeshTCPRoute", "backend-tcp", tcp_rules),
    ):
        spec = {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "MeshService", "name": service}, "rules": rules}],
        }
        control_plane.put(f"route-{service}", _document(kind, f"{service}-split", spec))
    web_in, web_app, to_http, to_tcp = free_ports(4)
    web = {
        "type": "Dataplane",
        "mesh": "default",
        "name": "web",
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {"port": web_in, "servicePort": web_app, "tags": {"kuma.io/service": "web"}}
            ],
            "outbound": [
                {"port": to_http, "tags": {"kuma.io/service": "backend"}},
                {"port": to_tcp, "tags": {"kuma.io/service": "backend-tcp"}},
            ],
        },
    }
    control_plane.put("web", yaml.safe_dump(web))
    client = envoy_factory(
        "default.web",
        "web",
        control_plane.dp_port,
        token=control_plane.token("default.web"),
        ca=control_plane.ca,
    )
    client.wait_live()
    for service, index in (("backend", 0), ("backend-tcp", 1)):
        for version in ("v1", "v2"):
            cluster = destination_cluster_name(service, [("version", version)])
            client.wait_endpoints(cluster, {inbounds[version][index]})
    for port in (to_http, to_tcp):
        client.wait_listener(f"outbound:127.0.0.1:{port}")
        get_ok(port)

    http_split = _served(to_http, 500)
    assert set(http_split) <= {"backend-v1", "backend-v2"}
    share = http_split["backend-v1"] / 500
    assert abs(share - 0.8) <= 0.07, http_split
    assert _served(to_http, 20, {"x-version": "v2"}) == {"backend-v2": 20}
    tcp_split = _served(to_tcp, 200)
    share = tcp_split["backend-v1"] / 200
    assert abs(share - 0.8) <= 0.10, tcp_split
