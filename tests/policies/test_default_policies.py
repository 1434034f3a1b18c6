"""A new mesh's proxies with Kuma's default policies: the values Kuma 2.7's plugins write
(pkg/defaults/mesh + the MeshTimeout, MeshRetry and MeshCircuitBreaker plugins)."""

from __future__ import annotations

import json
from typing import Any

import yaml
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.policies import default_policies, resolve
from kuma.resources import Dataplane, Mesh, from_document
from kuma.resources.model import Policy
from kuma.xds.generate import StaticMeshView, generate_proxy, types

WEB = """
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 10000
    servicePort: 8000
    tags: {kuma.io/service: web, kuma.io/protocol: http}
  - port: 10001
    servicePort: 8001
    tags: {kuma.io/service: web-tcp}
  outbound:
  - port: 20000
    tags: {kuma.io/service: backend}
  - port: 20001
    tags: {kuma.io/service: db}
"""
BACKEND = """
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 10.0.0.2
  inbound:
  - port: 10000
    tags: {kuma.io/service: backend, kuma.io/protocol: http}
"""
DB = """
type: Dataplane
mesh: default
name: db-1
networking:
  address: 10.0.0.3
  inbound:
  - port: 10000
    tags: {kuma.io/service: db, kuma.io/protocol: tcp}
"""
GATEWAY = """
type: Dataplane
mesh: default
name: edge-1
networking:
  address: 10.0.0.4
  gateway: {tags: {kuma.io/service: edge}}
  outbound:
  - port: 20000
    tags: {kuma.io/service: backend}
"""


def _dataplane(text: str) -> Dataplane:
    resource = from_document(yaml.safe_load(text))
    assert isinstance(resource, Dataplane)
    return resource


def _plain(message: Any) -> Any:
    return json.loads(json_format.MessageToJson(message))


def _generate(name: str) -> dict[str, dict[str, Any]]:
    dataplanes = {d.name: d for d in map(_dataplane, (WEB, BACKEND, DB, GATEWAY))}
    mesh = Mesh(name="default")
    by_kind: dict[str, list[Policy]] = {}
    for policy in default_policies(mesh):
        by_kind.setdefault(policy.TYPE, []).append(policy)
    dataplane = dataplanes[name]
    view = StaticMeshView(dataplanes.values(), mesh)
    resources = generate_proxy(dataplane, view, 9901, policies=resolve(dataplane, by_kind))
    return {t: {n: _plain(m) for n, m in by_name.items()} for t, by_name in resources.items()}


def _filter(listener: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = listener["filterChains"][0]["filters"][0]["typedConfig"]
    return config


def test_outbound_http_gets_kuma_default_timeouts_and_retries() -> None:
    hcm = _filter(_generate("web-1")[types.LISTENER]["outbound:127.0.0.1:20000"])
    route = hcm["routeConfig"]["virtualHosts"][0]["routes"][0]["route"]
    assert route["timeout"] == "15s"
    assert route["idleTimeout"] == "1800s"
    assert route["retryPolicy"] == {
        "retryOn": "gateway-error,connect-failure,refused-stream",
        "numRetries": 5,
        "perTryTimeout": "16s",
        "retryBackOff": {"baseInterval": "0.025s", "maxInterval": "0.250s"},
    }
    assert hcm["requestHeadersTimeout"] == "0s"
    assert hcm["commonHttpProtocolOptions"]["idleTimeout"] == "0s"


def test_outbound_cluster_gets_connect_idle_and_circuit_breaker() -> None:
    cluster = _generate("web-1")[types.CLUSTER]["backend"]
    assert cluster["connectTimeout"] == "5s"
    options = cluster["typedExtensionProtocolOptions"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]["commonHttpProtocolOptions"]
    assert options == {
        "idleTimeout": "3600s",
        "maxConnectionDuration": "0s",
        "maxStreamDuration": "0s",
    }
    assert cluster["circuitBreakers"] == {
        "thresholds": [
            {
                "maxConnections": 1024,
                "maxPendingRequests": 1024,
                "maxRequests": 1024,
                "maxRetries": 3,
            }
        ]
    }


def test_outbound_tcp_gets_idle_timeout_and_connect_attempts() -> None:
    proxy = _filter(_generate("web-1")[types.LISTENER]["outbound:127.0.0.1:20001"])
    assert proxy["idleTimeout"] == "3600s"
    assert proxy["maxConnectAttempts"] == 5


def test_inbound_gets_kuma_inbound_defaults() -> None:
    resources = _generate("web-1")
    hcm = _filter(resources[types.LISTENER]["inbound:10.0.0.1:10000"])
    route = hcm["routeConfig"]["virtualHosts"][0]["routes"][0]["route"]
    assert route["timeout"] == "0s"
    assert route["idleTimeout"] == "3600s"
    assert "retryPolicy" not in route  # MeshRetry has no from side
    assert hcm["commonHttpProtocolOptions"]["idleTimeout"] == "0s"
    cluster = resources[types.CLUSTER]["localhost:8000"]
    assert cluster["connectTimeout"] == "10s"
    options = cluster["typedExtensionProtocolOptions"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]["commonHttpProtocolOptions"]
    assert options["idleTimeout"] == "7200s"
    tcp = _filter(resources[types.LISTENER]["inbound:10.0.0.1:10001"])
    assert tcp["idleTimeout"] == "7200s"


def test_delegated_gateway_gets_the_gateway_timeouts() -> None:
    hcm = _filter(_generate("edge-1")[types.LISTENER]["outbound:127.0.0.1:20000"])
    route = hcm["routeConfig"]["virtualHosts"][0]["routes"][0]["route"]
    # mesh-gateways-timeout-all: stream idle 5s; request timeout not set there, so 15s.
    assert route["idleTimeout"] == "5s"
    assert route["timeout"] == "15s"


def test_skip_creating_initial_policies() -> None:
    assert default_policies(Mesh(name="m", skip_creating_initial_policies=("*",))) == []
    kept = default_policies(Mesh(name="m", skip_creating_initial_policies=("MeshRetry",)))
    assert sorted(p.name for p in kept) == [
        "mesh-circuit-breaker-all-m",
        "mesh-gateways-timeout-all-m",
        "mesh-timeout-all-m",
    ]
