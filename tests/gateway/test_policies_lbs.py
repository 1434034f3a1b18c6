"""MeshLoadBalancingStrategy on the builtin gateway, compared with Kuma 2.7's
``basic.gateway.{clusters,routes}`` goldens of the meshloadbalancingstrategy plugin (copied into
tests/gateway/kuma/): the backend's cluster gets the ring hash, every route the hash policies.
Kuma's golden routes two MeshGatewayRoutes (routes without names): ours are dropped."""

from __future__ import annotations

from typing import Any

import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_pb2

from kuma.resources import decode
from kuma.resources.validation import validate
from kuma.xds import types

from .test_kuma_golden import KUMA
from .test_policies import ROUTES, engine_with, served

SCENARIO = """\
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: sample-gateway
networking:
  address: 192.168.0.1
  gateway:
    type: BUILTIN
    tags: {kuma.io/service: sample-gateway, k8s.io/node: node1, k8s.io/az: test,
           k8s.io/region: test}
---
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 192.168.1.1
  inbound: [{port: 8084, tags: {kuma.io/service: backend, kuma.io/protocol: http}}]
---
type: MeshGateway
mesh: default
name: sample-gateway
selectors: [{match: {kuma.io/service: sample-gateway}}]
conf: {listeners: [{protocol: HTTP, port: 8080}]}
---
type: MeshHTTPRoute
mesh: default
name: routes
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway}
  to:
    - targetRef: {kind: Mesh}
      rules:
        - matches: [{path: {type: Exact, value: /}}]
          default: {backendRefs: [{kind: MeshService, name: backend, weight: 1}]}
        - matches: [{path: {type: Exact, value: /another}}]
          default: {backendRefs: [{kind: MeshService, name: backend, weight: 1}]}
---
type: MeshLoadBalancingStrategy
mesh: default
name: ring-hash
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway}
  to:
    - targetRef: {kind: Mesh}
      default:
        loadBalancer:
          type: RingHash
          ringHash:
            minRingSize: 100
            maxRingSize: 1000
            hashFunction: MurmurHash2
            hashPolicies:
              - {type: QueryParameter, queryParameter: {name: queryparam}, terminal: true}
              - {type: Connection, connection: {sourceIP: true}, terminal: false}
"""


def golden(kind: str) -> dict[str, Any]:
    document = yaml.safe_load(
        (KUMA / f"meshloadbalancingstrategy-basic.gateway.{kind}.golden.yaml").read_text()
    )
    (item,) = document["resources"]
    resource: dict[str, Any] = item["resource"]
    resource.pop("@type")
    return {item["name"]: resource}


def test_meshloadbalancingstrategy_equals_kuma_gateway_goldens() -> None:
    assert not [v for r in decode(SCENARIO) for v in validate(r)]
    engine = engine_with(SCENARIO)
    ((name, cluster),) = golden("clusters").items()
    assert served(engine, types.CLUSTER, name, cluster_pb2.Cluster) == cluster
    routes = served(engine, types.ROUTE, ROUTES, route_pb2.RouteConfiguration)
    for route in routes["virtualHosts"][0]["routes"]:
        route.pop("name")
    assert routes == golden("routes")[ROUTES]
