"""A builtin gateway served by the engine, compared with Kuma 2.7's meshhttproute plugin
goldens (tests/gateway/kuma/<case>.*.golden.yaml, copied from
pkg/plugins/policies/meshhttproute/plugin/v1alpha1/testdata). ``gateway``: the same MeshGateway
(HTTP on 8080 for every host, 8081 for go.dev, 8082 for *.dev, a TCP listener on 9080 that
gets nothing yet), the same four ``to`` items (hostnames *, go.dev, *.dev, other.dev) and the
same backend; ``gateway-root-prefix``: one listener, one ``PathPrefix /`` rule (no exact ``/``);
``gateway-builtingateway-with-multiple-listeners``: four listeners (two named hosts, a wildcard
domain, every host) and the same ``/`` rule for every host and for two named hosts.
Listeners, route configurations, clusters and endpoints must equal Kuma's, field by field,
but for two differences every proxy of this project has (:func:`as_this_project_serves`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.resources import decode
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.generate._pb import INTERNAL_ADDRESSES

from .helpers import events

KUMA = Path(__file__).parent / "kuma"

SCENARIO = """\
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: sample-gateway
networking:
  address: 192.168.0.1
  gateway: {type: BUILTIN, tags: {kuma.io/service: sample-gateway}}
---
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 192.168.0.4
  inbound:
    - port: 8084
      tags: {kuma.io/service: backend, kuma.io/protocol: http, region: us}
---
type: MeshGateway
mesh: default
name: sample-gateway
selectors: [{match: {kuma.io/service: sample-gateway}}]
conf:
  listeners:
    - {protocol: HTTP, port: 8080}
    - {protocol: HTTP, port: 8081, hostname: go.dev}
    - {protocol: HTTP, port: 8082, hostname: "*.dev"}
    - {protocol: TCP, port: 9080}
---
type: MeshHTTPRoute
mesh: default
name: sample-routes
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway}
  to:
    - targetRef: {kind: Mesh}
      rules:
        - matches: [{path: {type: PathPrefix, value: /wild}}]
          default: {backendRefs: [{kind: MeshService, name: backend, weight: 100}]}
    - targetRef: {kind: Mesh}
      hostnames: [go.dev]
      rules:
        - matches: [{path: {type: PathPrefix, value: /go-dev}}]
          default: {backendRefs: [{kind: MeshService, name: backend, weight: 100}]}
    - targetRef: {kind: Mesh}
      hostnames: ["*.dev"]
      rules:
        - matches: [{path: {type: PathPrefix, value: /wild-dev}}]
          default: {backendRefs: [{kind: MeshService, name: backend, weight: 100}]}
    - targetRef: {kind: Mesh}
      hostnames: [other.dev]
      rules:
        - matches: [{path: {type: PathPrefix, value: /other-dev}}]
          default: {backendRefs: [{kind: MeshService, name: backend, weight: 100}]}
"""

ROOT_PREFIX = (
    SCENARIO.split("---\ntype: MeshGateway")[0]
    + """\
---
type: MeshGateway
mesh: default
name: sample-gateway
selectors: [{match: {kuma.io/service: sample-gateway}}]
conf: {listeners: [{protocol: HTTP, port: 8080}]}
---
type: MeshHTTPRoute
mesh: default
name: sample-routes
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway}
  to:
    - targetRef: {kind: Mesh}
      rules:
        - matches: [{path: {type: PathPrefix, value: /}}]
          default: {backendRefs: [{kind: MeshService, name: backend, weight: 100}]}
"""
)
MULTIPLE_LISTENERS = """\
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: sample-gateway
networking:
  address: 192.168.0.1
  gateway: {type: BUILTIN, tags: {kuma.io/service: sample-gateway}}
---
type: Dataplane
mesh: default
name: echo-1
networking:
  address: 192.168.0.4
  inbound: [{port: 8084, tags: {kuma.io/service: echo-service, kuma.io/protocol: http}}]
---
type: MeshGateway
mesh: default
name: sample-gateway
selectors: [{match: {kuma.io/service: sample-gateway}}]
conf:
  listeners:
    - {protocol: HTTP, port: 8080, hostname: example.kuma.io}
    - {protocol: HTTP, port: 8081, hostname: another.kuma.io}
    - {protocol: HTTP, port: 8082, hostname: "*.test.kuma.io"}
    - {protocol: HTTP, port: 8083}
---
type: MeshHTTPRoute
mesh: default
name: global
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway}
  to:
    - targetRef: {kind: Mesh}
      rules:
        - matches: [{path: {type: PathPrefix, value: /}}]
          default: {backendRefs: [{kind: MeshService, name: echo-service, weight: 100}]}
---
type: MeshHTTPRoute
mesh: default
name: domains
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway}
  to:
    - targetRef: {kind: Mesh}
      hostnames: [another.kuma.io, app.test.kuma.io]
      rules:
        - matches: [{path: {type: PathPrefix, value: /}}]
          default: {backendRefs: [{kind: MeshService, name: echo-service, weight: 100}]}
"""
CASES = {
    "gateway": SCENARIO,
    "gateway-root-prefix": ROOT_PREFIX,
    "gateway-builtingateway-with-multiple-listeners": MULTIPLE_LISTENERS,
}

KINDS: dict[str, tuple[str, Any]] = {
    "listeners": (types.LISTENER, listener_pb2.Listener),
    "routes": (types.ROUTE, route_pb2.RouteConfiguration),
    "clusters": (types.CLUSTER, cluster_pb2.Cluster),
    "endpoints": (types.ENDPOINT, endpoint_pb2.ClusterLoadAssignment),
}


def as_this_project_serves(kind: str, resource: dict[str, Any]) -> None:
    """The golden as this project serves every proxy: internal addresses are Kuma's default
    ``ipam.knownInternalCIDRs`` (Kuma's unit test runs with loopback only), and mesh service
    endpoints carry no ``envoy.transport_socket_match`` metadata (this project's sidecar CLAs
    do not either: it selects no transport socket)."""
    if kind == "listeners":
        for chain in resource["filterChains"]:
            config = chain["filters"][0]["typedConfig"]
            config["internalAddressConfig"] = json_format.MessageToDict(INTERNAL_ADDRESSES)
    if kind == "endpoints":
        for group in resource.get("endpoints", ()):
            for endpoint in group["lbEndpoints"]:
                endpoint["metadata"]["filterMetadata"].pop("envoy.transport_socket_match")


def served(engine: Engine, node: str, kind: str, names: set[str]) -> dict[str, Any]:
    type_url, message_type = KINDS[kind]
    watch = engine.subscribe(node)
    found = watch.resources(type_url)
    return {
        name: json.loads(json_format.MessageToJson(message_type.FromString(found[name].body)))
        for name in names
        if name in found
    }


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_gateway_case_equals_kuma_golden(case: str, kind: str) -> None:
    golden = yaml.safe_load((KUMA / f"{case}.{kind}.golden.yaml").read_text())
    expected = {item["name"]: item["resource"] for item in golden["resources"]}
    for resource in expected.values():
        resource.pop("@type")
        as_this_project_serves(kind, resource)
    engine = Engine()
    engine.apply_now(events(decode(CASES[case])))
    assert served(engine, "default.sample-gateway", kind, set(expected)) == expected
    # Nothing more than Kuma's (the admin listener and cluster are every proxy's).
    names = engine.subscribe("default.sample-gateway").resources(KINDS[kind][0])
    assert {n for n in names if not n.startswith("kuma:")} == set(expected)


# The ``gateway`` scenario's Dataplanes and MeshGateway (its TCP listener on 9080), a TCP
# backend, and a MeshTCPRoute on the gateway.
TCP = (
    SCENARIO.split("---\ntype: MeshHTTPRoute")[0].replace(
        "kuma.io/protocol: http", "kuma.io/protocol: tcp"
    )
    + """\
---
type: MeshTCPRoute
mesh: default
name: tcp
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway}
  to:
    - targetRef: {kind: Mesh}
      rules:
        - default:
            backendRefs:
              - {kind: MeshService, name: backend, weight: 100}
              - {kind: MeshService, name: other-backend, weight: 100}
"""
)
#: The TCP listener of meshtcproute's ``gateway`` case and its clusters (its TLS listener on
#: 9081 and that listener's backends are not built yet).
TCP_NAMES = {
    "listeners": {"sample-gateway:TCP:9080"},
    "clusters": {"backend-26cb64fa4e85e7b7", "other-backend-d14e06e801b3b5d6"},
    "endpoints": {"backend-26cb64fa4e85e7b7", "other-backend-d14e06e801b3b5d6"},
}


@pytest.mark.parametrize("kind", sorted(TCP_NAMES))
def test_tcp_listener_equals_kuma_meshtcproute_golden(kind: str) -> None:
    golden = yaml.safe_load((KUMA / f"meshtcproute-gateway.{kind}.golden.yaml").read_text())
    expected = {
        item["name"]: item["resource"]
        for item in golden["resources"]
        if item["name"] in TCP_NAMES[kind]
    }
    for resource in expected.values():
        resource.pop("@type")
        if kind == "endpoints":
            as_this_project_serves(kind, resource)
    engine = Engine()
    engine.apply_now(events(decode(TCP)))
    assert served(engine, "default.sample-gateway", kind, TCP_NAMES[kind]) == expected
