"""The engine re-assembles a builtin gateway when its MeshGateway, its routes or its backends
change, and only then: a sidecar of the mesh is not touched by any of these."""

from __future__ import annotations

from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from kuma.resources import Resource, decode, decode_one
from kuma.store import Operation
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.engine.watches import Subscription

from .helpers import BASE, GATEWAY, ROUTE_HEAD, events

ROUTE = (
    ROUTE_HEAD
    + """\
        - matches: [{path: {type: PathPrefix, value: /web}}]
          default: {backendRefs: [{kind: MeshService, name: web}]}
        - matches: [{path: {type: PathPrefix, value: /api}}]
          default: {backendRefs: [{kind: MeshService, name: api}]}
"""
)
LISTENER = "edge:HTTP:8000"
ROUTES = "edge:HTTP:8000:*"


def apply(engine: Engine, *resources: Resource, operation: Operation = Operation.UPDATE) -> None:
    engine.apply_now(events(resources, operation))


def paths(watch: Subscription) -> list[tuple[str, str]]:
    config = route_pb2.RouteConfiguration.FromString(watch.resources(types.ROUTE)[ROUTES].body)
    return [
        (route.match.path or route.match.prefix, route.route.weighted_clusters.clusters[0].name)
        for route in config.virtual_hosts[0].routes
        if route.HasField("route")
    ]


def addresses(watch: Subscription, cluster: str) -> list[str]:
    body = watch.resources(types.ENDPOINT)[cluster].body
    cla = endpoint_pb2.ClusterLoadAssignment.FromString(body)
    return [
        e.endpoint.address.socket_address.address for g in cla.endpoints for e in g.lb_endpoints
    ]


def test_gateway_follows_its_meshgateway_routes_and_backends() -> None:
    engine = Engine()
    apply(engine, *decode(BASE))
    edge, web = engine.subscribe("default.edge-1"), engine.subscribe("default.web-1")
    assert LISTENER not in edge.resources(types.LISTENER)
    web_version = web.resources(types.LISTENER)

    apply(engine, decode_one(GATEWAY))
    assert LISTENER in edge.resources(types.LISTENER)
    assert engine.last_batch.proxies_assembled == 1  # the gateway only
    # No route yet: every host answers Kuma's 404.
    config = route_pb2.RouteConfiguration.FromString(edge.resources(types.ROUTE)[ROUTES].body)
    assert config.virtual_hosts[0].routes[0].direct_response.status == 404

    apply(engine, decode_one(ROUTE))
    assert engine.last_batch.proxies_assembled == 1
    # Kuma's gateway order: exact before prefix, longer first, then by path.
    assert [p for p, _ in paths(edge)] == ["/api", "/web", "/api/", "/web/"]
    api_cluster, web_cluster = (name for _, name in paths(edge)[:2])
    assert web_cluster.startswith("web-")
    assert api_cluster.startswith("api-")
    assert addresses(edge, web_cluster) == ["10.0.0.2"]

    # A new endpoint of a backend: its ClusterLoadAssignment is patched, nothing rebuilt.
    second = decode_one(BASE.split("---\n")[2].replace("web-1", "web-2").replace(".2", ".9"))
    apply(engine, second)
    assert addresses(edge, web_cluster) == ["10.0.0.2", "10.0.0.9"]
    assert engine.last_batch.proxies_assembled == 0
    # A backend's protocol changes: the gateway's cluster is rebuilt (re-assembled).
    grpc = decode_one(BASE.split("---\n")[3].replace("protocol: http", "protocol: http2"))
    apply(engine, grpc)
    assert engine.last_batch.proxies_assembled == 1

    moved = decode_one(ROUTE.replace("value: /web", "value: /site"))
    apply(engine, moved)
    assert [p for p, _ in paths(edge)] == ["/site", "/api", "/site/", "/api/"]

    apply(engine, decode_one(GATEWAY), operation=Operation.DELETE)
    assert LISTENER not in edge.resources(types.LISTENER)
    assert ROUTES not in edge.resources(types.ROUTE)
    assert web_cluster not in edge.resources(types.CLUSTER)
    assert web.resources(types.LISTENER) == web_version  # the sidecar never changed


def test_the_best_ranked_meshgateway_serves_and_its_removal_hands_over() -> None:
    """Kuma's SelectGateway: the selector with more exact tags wins (a tie: the first by
    name); deleting the winner hands the proxy to the other."""
    engine = Engine()
    apply(engine, *decode(BASE))
    edge = engine.subscribe("default.edge-1")
    broad = decode_one(GATEWAY.replace("name: edge", "name: a-broad").replace(": edge}", ": '*'}"))
    apply(engine, broad, decode_one(GATEWAY))
    assert set(edge.resources(types.LISTENER)) == {"kuma:envoy:admin", LISTENER}
    apply(engine, decode_one(GATEWAY), operation=Operation.DELETE)
    assert set(edge.resources(types.LISTENER)) == {"kuma:envoy:admin", "a-broad:HTTP:8000"}
    # Named after the MeshGateway, its stats after the gateway Dataplane's service.
    body = edge.resources(types.LISTENER)["a-broad:HTTP:8000"].body
    chain = listener_pb2.Listener.FromString(body).filter_chains[0]
    manager = hcm_pb2.HttpConnectionManager.FromString(chain.filters[0].typed_config.value)
    assert manager.stat_prefix == "edge"


TCP = """\
type: MeshTCPRoute
mesh: default
name: edge-tcp
spec:
  targetRef: {kind: MeshGateway, name: edge}
  to:
    - targetRef: {kind: Mesh}
      rules: [{default: {backendRefs: [{kind: MeshService, name: api}]}}]
"""


def test_a_meshtcproute_on_the_gateway_gives_its_tcp_listener() -> None:
    engine = Engine()
    apply(engine, *decode(BASE))
    tcp_gateway = GATEWAY.replace("protocol: HTTP", "protocol: TCP")
    apply(engine, decode_one(tcp_gateway))
    edge = engine.subscribe("default.edge-1")
    assert set(edge.resources(types.LISTENER)) == {"kuma:envoy:admin"}  # no route: no listener
    apply(engine, decode_one(TCP))
    assert engine.last_batch.proxies_assembled == 1
    assert "edge:TCP:8000" in edge.resources(types.LISTENER)
    apply(engine, decode_one(TCP), operation=Operation.DELETE)
    assert "edge:TCP:8000" not in edge.resources(types.LISTENER)
