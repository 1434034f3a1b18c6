"""Policies whose top-level targetRef is a MeshHTTPRoute, on the builtin gateway: their confs
reach the routes of that MeshHTTPRoute's rules only (Kuma's ``buildToList``: one rule per route
rule, its subset the rule's matches hash; the gateway's route names are those hashes).
Compared with meshtimeout's ``route-level-timeouts.gateway.*`` and meshretry's
``per-route-configuration.gateway.http.routes`` goldens (copied into tests/gateway/kuma/)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from kuma.xds import types

from .test_kuma_golden import as_this_project_serves
from .test_policies import BASE, CLUSTER, LISTENER, ROUTES, engine_with, golden, served

#: The samples' gateway with two MeshHTTPRoutes: ``/`` (in BASE, weight 100 here) and
#: ``GET /another-route`` (the one the policies target).
ROUTES_YAML = BASE.replace("name: backend, weight: 1}", "name: backend, weight: 100}") + (
    """\
---
type: MeshHTTPRoute
mesh: default
name: another-route
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway}
  to:
    - targetRef: {kind: Mesh}
      rules:
        - matches: [{path: {type: Exact, value: /another-route}, method: GET}]
          default: {backendRefs: [{kind: MeshService, name: backend, weight: 100}]}
"""
)
TIMEOUT = """\
type: MeshTimeout
mesh: default
name: route-timeouts
spec:
  targetRef: {kind: MeshHTTPRoute, name: another-route}
  to:
    - targetRef: {kind: Mesh}
      default: {http: {requestTimeout: 24s, streamIdleTimeout: 99s}}
"""
#: mesh-retry-all's http section (Kuma's case has the mesh's default retry on every route).
MESH_RETRY = """\
type: MeshRetry
mesh: default
name: mesh-retry-all-default
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: Mesh}
      default:
        http: {numRetries: 5, perTryTimeout: 16s, backOff: {baseInterval: 25ms, maxInterval: 250ms}}
"""
ROUTE_RETRY = """\
type: MeshRetry
mesh: default
name: route-retry
spec:
  targetRef: {kind: MeshHTTPRoute, name: another-route}
  to:
    - targetRef: {kind: Mesh}
      default:
        http:
          numRetries: 1
          perTryTimeout: 2s
          backOff: {baseInterval: 3s, maxInterval: 4s}
          rateLimitedBackOff:
            maxInterval: 5s
            resetHeaders:
              - {name: retry-after-http, format: Seconds}
              - {name: x-retry-after-http, format: UnixTimestamp}
          retryOn: [5xx, GatewayError, Reset, Retriable4xx, ConnectFailure, EnvoyRatelimited,
                    RefusedStream, Http3PostConnectFailure, HttpMethodConnect, HttpMethodDelete,
                    HttpMethodGet, HttpMethodHead, HttpMethodOptions, HttpMethodPatch,
                    HttpMethodPost, HttpMethodPut, HttpMethodTrace, "429"]
          retriableResponseHeaders:
            - {type: RegularExpression, name: x-retry-regex, value: .*}
            - {type: Exact, name: x-retry-exact, value: exact-value}
          retriableRequestHeaders:
            - {type: Prefix, name: x-retry-prefix, value: prefix-}
          hostSelection:
            - {predicate: OmitPreviousHosts}
            - {predicate: OmitPreviousPriorities, updateFrequency: 2}
            - {predicate: OmitHostsWithTags, tags: {test: test}}
          hostSelectionMaxAttempts: 2
"""


def test_meshtimeout_per_route_equals_kuma_gateway_goldens() -> None:
    engine = engine_with(ROUTES_YAML, TIMEOUT)
    listener = golden("meshtimeout-route-level-timeouts.gateway.listener.golden.yaml")
    as_this_project_serves("listeners", listener)
    assert served(engine, types.LISTENER, LISTENER, listener_pb2.Listener) == listener
    routes = golden("meshtimeout-route-level-timeouts.gateway.route.golden.yaml")
    assert served(engine, types.ROUTE, ROUTES, route_pb2.RouteConfiguration) == routes
    cluster = golden("meshtimeout-route-level-timeouts.gateway.cluster.golden.yaml")
    assert served(engine, types.CLUSTER, CLUSTER, cluster_pb2.Cluster) == cluster


def test_meshretry_per_route_equals_kuma_gateway_golden() -> None:
    engine = engine_with(ROUTES_YAML, MESH_RETRY, ROUTE_RETRY)
    routes = golden("meshretry-per-route-configuration.gateway.http.routes.golden.yaml")
    assert served(engine, types.ROUTE, ROUTES, route_pb2.RouteConfiguration) == routes
