"""MeshHTTPRoute and MeshTCPRoute on generated proxies: weighted subset clusters with their
endpoints, matches in Kuma's order, MeshHTTPRoute before MeshTCPRoute for HTTP services."""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from kuma.policies import resolve
from kuma.resources import Dataplane, from_document
from kuma.resources.model import Policy
from kuma.xds import types
from kuma.xds.generate.destination import destination_cluster_name
from kuma.xds.generate.proxy import generate_proxy
from kuma.xds.generate.view import StaticMeshView


def dataplane(name: str, tags: dict[str, str], outbounds: list[dict[str, Any]] = ()) -> Dataplane:  # type: ignore[assignment]
    document = {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "networking": {
            "address": f"10.0.0.{len(name)}",
            "inbound": [{"port": 8080, "servicePort": 80, "tags": tags}],
            "outbound": list(outbounds),
        },
    }
    resource = from_document(document)
    assert isinstance(resource, Dataplane)
    return resource


def policy(kind: str, name: str, to: list[dict[str, Any]]) -> Policy:
    resource = from_document(
        {
            "type": kind,
            "mesh": "default",
            "name": name,
            "spec": {"targetRef": {"kind": "Mesh"}, "to": to},
        }
    )
    assert isinstance(resource, Policy)
    return resource


def generate(protocol: str, *policies: Policy) -> dict[str, Any]:
    web = dataplane(
        "web", {"kuma.io/service": "web"}, [{"port": 10001, "tags": {"kuma.io/service": "backend"}}]
    )
    backends = [
        dataplane(
            f"backend-{v}",
            {"kuma.io/service": "backend", "kuma.io/protocol": protocol, "version": v},
        )
        for v in ("v1", "v2")
    ]
    view = StaticMeshView([web, *backends])
    by_kind: dict[str, list[Policy]] = {}
    for p in policies:
        by_kind.setdefault(p.TYPE, []).append(p)
    return generate_proxy(web, view, 9901, policies=resolve(web, by_kind))


V1 = destination_cluster_name("backend", [("version", "v1")])
V2 = destination_cluster_name("backend", [("version", "v2")])
SPLIT = [
    {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v1"}, "weight": 80},
    {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v2"}, "weight": 20},
]


def _routes(resources: dict[str, Any]) -> list[Any]:
    listener = resources[types.LISTENER]["outbound:127.0.0.1:10001"]
    hcm = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    return list(hcm.route_config.virtual_hosts[0].routes)


def test_http_split_and_header_match() -> None:
    route = policy(
        "MeshHTTPRoute",
        "split",
        [
            {
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "default": {"backendRefs": SPLIT},
                    },
                    {
                        "matches": [
                            {
                                "path": {"type": "PathPrefix", "value": "/"},
                                "headers": [{"name": "x-version", "value": "v2"}],
                            }
                        ],
                        "default": {"backendRefs": [SPLIT[1]]},
                    },
                ],
            }
        ],
    )
    resources = generate("http", route)
    routes = _routes(resources)
    # Kuma's order: equal paths, then more headers first (Kuma sorts before it gives a
    # path-less match its "/" prefix, so a header-only match would sort last: the rule
    # here names the path). The catch-all exists, so none is added.
    assert [r.match.headers[0].name if r.match.headers else "" for r in routes] == ["x-version", ""]
    assert routes[0].route.cluster == V2
    assert [(c.name, c.weight.value) for c in routes[1].route.weighted_clusters.clusters] == [
        (V1, 80),
        (V2, 20),
    ]
    assert routes[1].name == "9Zuf5Tg79OuZcQITwBbQykxAk2u4fRKrwYn3//AL4Yo="
    # The subset clusters and their endpoints; the whole service is not reached any more.
    assert set(resources[types.CLUSTER]) >= {V1, V2}
    assert "backend" not in resources[types.CLUSTER]
    cla = resources[types.ENDPOINT][V2]
    assert len(cla.endpoints[0].lb_endpoints) == 1


def test_tcp_split_and_http_precedence() -> None:
    tcp = policy(
        "MeshTCPRoute",
        "tcp",
        [
            {
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "rules": [{"default": {"backendRefs": SPLIT}}],
            }
        ],
    )
    resources = generate("tcp", tcp)
    listener = resources[types.LISTENER]["outbound:127.0.0.1:10001"]
    proxy = tcp_proxy_pb2.TcpProxy()
    listener.filter_chains[0].filters[0].typed_config.Unpack(proxy)
    assert proxy.stat_prefix == "backend"
    assert [(c.name, c.weight) for c in proxy.weighted_clusters.clusters] == [(V1, 80), (V2, 20)]
    # An HTTP service: MeshTCPRoute alone makes it a TCP proxy; with a MeshHTTPRoute rule for
    # the service, the HTTP routes win.
    only_tcp = generate("http", tcp)[types.LISTENER]["outbound:127.0.0.1:10001"]
    assert only_tcp.filter_chains[0].filters[0].name == "envoy.filters.network.tcp_proxy"
    http = policy(
        "MeshHTTPRoute",
        "http",
        [
            {
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "rules": [
                    {
                        "matches": [{"path": {"type": "Exact", "value": "/v1"}}],
                        "default": {"backendRefs": [SPLIT[0]]},
                    }
                ],
            }
        ],
    )
    routes = _routes(generate("http", tcp, http))
    assert [(r.match.path, r.route.cluster) for r in routes] == [("/v1", V1), ("", "backend")]
