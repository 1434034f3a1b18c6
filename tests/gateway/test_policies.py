"""Policies on the builtin gateway, as Kuma's plugins' gateway branches apply them: MeshTimeout
(listener from ``from``, route actions and clusters from ``to``), MeshCircuitBreaker
(clusters) and MeshRetry (routes, TCP connect attempts), compared with Kuma 2.7's goldens
(tests/gateway/kuma/: meshtimeout's ``basic.gateway.*`` and meshcircuitbreaker's
``basic.gateway_cluster``, copied from each plugin's testdata; Kuma's tests feed the rules
directly, here they come from the policies' YAML) and, for a new mesh's default policies
(``mesh-gateways-timeout-all``, ``mesh-retry-all``, ``mesh-circuit-breaker-all``), with the
values Kuma's plugins compute from them."""

from __future__ import annotations

import json
from typing import Any

import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.policies import default_policies
from kuma.resources import Mesh, decode
from kuma.xds import types
from kuma.xds.engine import Engine

from .helpers import events
from .test_kuma_golden import KUMA, as_this_project_serves

NODE = "default.sample-gateway"
LISTENER = "sample-gateway:HTTP:8080"
ROUTES = "sample-gateway:HTTP:8080:*"
CLUSTER = "backend-26cb64fa4e85e7b7"

#: Kuma's ``samples.GatewayResource`` (one HTTP listener on 8080), its gateway Dataplane, an
#: http backend and an Exact ``/`` route to it (as the samples' MeshGatewayRoute).
BASE = """\
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
name: sample-route
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway}
  to:
    - targetRef: {kind: Mesh}
      rules:
        - matches: [{path: {type: Exact, value: /}}]
          default: {backendRefs: [{kind: MeshService, name: backend, weight: 1}]}
"""
TIMEOUT = """\
type: MeshTimeout
mesh: default
name: gateway-timeouts
spec:
  targetRef: {kind: Mesh, proxyTypes: [Gateway]}
  from:
    - targetRef: {kind: Mesh}
      default:
        idleTimeout: 1h
        http: {requestTimeout: 311s, streamIdleTimeout: 1s, maxStreamDuration: 10m,
               maxConnectionDuration: 10m, requestHeadersTimeout: 99s}
  to:
    - targetRef: {kind: Mesh}
      default:
        connectionTimeout: 10s
        idleTimeout: 1h
        http: {requestTimeout: 5s, streamIdleTimeout: 1s, maxStreamDuration: 10m,
               maxConnectionDuration: 10m}
"""
CIRCUIT_BREAKER = """\
type: MeshCircuitBreaker
mesh: default
name: gateway-limits
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        connectionLimits: {maxConnectionPools: 1111, maxConnections: 2222,
                           maxPendingRequests: 3333, maxRequests: 4444, maxRetries: 5555}
"""


def engine_with(*documents: str) -> Engine:
    engine = Engine()
    engine.apply_now(events(decode("---\n".join(documents))))
    return engine


def served(engine: Engine, type_url: str, name: str, message_type: Any) -> dict[str, Any]:
    body = engine.subscribe(NODE).resources(type_url)[name].body
    found: dict[str, Any] = json.loads(json_format.MessageToJson(message_type.FromString(body)))
    return found


def golden(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((KUMA / name).read_text())
    document.pop("@type", None)
    return document


def test_meshtimeout_equals_kuma_gateway_goldens() -> None:
    engine = engine_with(BASE, TIMEOUT)
    listener = golden("meshtimeout-basic.gateway.listener.golden.yaml")
    as_this_project_serves("listeners", listener)
    assert served(engine, types.LISTENER, LISTENER, listener_pb2.Listener) == listener
    cluster = golden("meshtimeout-basic.gateway.cluster.golden.yaml")
    assert served(engine, types.CLUSTER, CLUSTER, cluster_pb2.Cluster) == cluster
    # Kuma's golden routes a MeshGatewayRoute, whose routes have no name.
    routes = served(engine, types.ROUTE, ROUTES, route_pb2.RouteConfiguration)
    for route in routes["virtualHosts"][0]["routes"]:
        route.pop("name")
    assert routes == golden("meshtimeout-basic.gateway.route.golden.yaml")


def test_meshcircuitbreaker_equals_kuma_gateway_golden() -> None:
    engine = engine_with(BASE, CIRCUIT_BREAKER)
    cluster = golden("meshcircuitbreaker-basic.gateway_cluster.golden.yaml")
    assert served(engine, types.CLUSTER, CLUSTER, cluster_pb2.Cluster) == cluster


def test_a_meshgateway_targetref_selects_listeners_by_their_tags() -> None:
    tagged = BASE.replace(
        "conf: {listeners: [{protocol: HTTP, port: 8080}]}",
        "conf: {listeners: [{protocol: HTTP, port: 8080, tags: {edge: public}}]}",
    )
    timeout = """\
type: MeshTimeout
mesh: default
name: internal-timeouts
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway, tags: {edge: internal}}
  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 10s}}]
"""
    engine = engine_with(tagged, timeout)
    (name,) = [n for n in engine.subscribe(NODE).resources(types.CLUSTER) if n.startswith("b")]
    assert served(engine, types.CLUSTER, name, cluster_pb2.Cluster)["connectTimeout"] == "5s"
    engine = engine_with(tagged, timeout.replace("internal", "public"))
    assert served(engine, types.CLUSTER, name, cluster_pb2.Cluster)["connectTimeout"] == "10s"


def test_a_new_meshs_default_policies_shape_the_gateway() -> None:
    tcp = BASE.replace(
        "conf: {listeners: [{protocol: HTTP, port: 8080}]}",
        "conf: {listeners: [{protocol: HTTP, port: 8080}, {protocol: TCP, port: 9080}]}",
    )
    tcp_route = """\
type: MeshTCPRoute
mesh: default
name: tcp
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway}
  to:
    - targetRef: {kind: Mesh}
      rules: [{default: {backendRefs: [{kind: MeshService, name: backend}]}}]
"""
    engine = Engine()
    defaults = default_policies(Mesh(name="default"))
    engine.apply_now(events([*decode(tcp + "---\n" + tcp_route), *defaults]))
    # mesh-gateways-timeout-all's ``from`` equals the builtin defaults: the listener is as
    # Kuma's golden without policies (mesh-timeout-all is for sidecars only).
    listener = golden("meshtimeout-route-level-timeouts.gateway.listener.golden.yaml")
    as_this_project_serves("listeners", listener)
    assert served(engine, types.LISTENER, LISTENER, listener_pb2.Listener) == listener
    watch = engine.subscribe(NODE)
    config = route_pb2.RouteConfiguration.FromString(watch.resources(types.ROUTE)[ROUTES].body)
    route = config.virtual_hosts[0].routes[0].route
    assert route.timeout.seconds == 15  # Kuma's default request timeout (``to`` sets none)
    assert route.idle_timeout.seconds == 5  # mesh-gateways-timeout-all's streamIdleTimeout
    # mesh-retry-all's http section: 5 retries, 16 s a try, 25-250 ms back-off.
    retry = route.retry_policy
    assert retry.num_retries.value == 5
    assert retry.per_try_timeout.seconds == 16
    assert retry.retry_back_off.base_interval.nanos == 25_000_000
    assert retry.retry_back_off.max_interval.nanos == 250_000_000
    cluster = served(engine, types.CLUSTER, CLUSTER, cluster_pb2.Cluster)
    assert cluster["connectTimeout"] == "5s"
    options = cluster["typedExtensionProtocolOptions"]
    common = next(iter(options.values()))["commonHttpProtocolOptions"]
    assert common["idleTimeout"] == "3600s"  # mesh-gateways-timeout-all's ``to`` idle
    # mesh-circuit-breaker-all's connection limits.
    thresholds = cluster["circuitBreakers"]["thresholds"][0]
    assert thresholds["maxConnections"] == 1024
    assert thresholds["maxRetries"] == 3
    # The TCP listener: the idle timeout of ``from`` and mesh-retry-all's connect attempts.
    tcp_listener = listener_pb2.Listener.FromString(
        watch.resources(types.LISTENER)["sample-gateway:TCP:9080"].body
    )
    proxy = tcp_proxy_pb2.TcpProxy()
    tcp_listener.filter_chains[0].filters[0].typed_config.Unpack(proxy)
    assert proxy.idle_timeout.seconds == 300
    assert proxy.max_connect_attempts.value == 5
    # A policy change re-assembles the gateway (its kinds' keys), not the sidecar.
    engine.apply_now(events(decode(CIRCUIT_BREAKER)))
    assert engine.last_batch.proxies_assembled == 1


FAULT_INJECTION = """\
type: MeshFaultInjection
mesh: default
name: gateway-faults
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway}
  to:
    - targetRef: {kind: Mesh}
      default:
        http:
          - abort: {httpStatus: 444, percentage: 12}
            delay: {value: 55s, percentage: "55"}
            responseBandwidth: {limit: 111Mbps, percentage: "62.9"}
"""


def test_meshfaultinjection_equals_kuma_gateway_golden() -> None:
    engine = engine_with(BASE, FAULT_INJECTION)
    listener = golden("meshfaultinjection-gateway_basic_listener.golden.yaml")
    as_this_project_serves("listeners", listener)
    assert served(engine, types.LISTENER, LISTENER, listener_pb2.Listener) == listener


RATE_LIMIT = """\
type: MeshRateLimit
mesh: default
name: gateway-limit
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway, tags: {protocol: http}}
  to:
    - targetRef: {kind: Mesh}
      default:
        local:
          http:
            requestRate: {num: 100, interval: 10s}
            onRateLimit:
              status: 444
              headers:
                add:
                  - {name: x-kuma-rate-limit-header, value: test-value}
                  - {name: x-kuma-rate-limit, value: other-value}
"""


def test_meshratelimit_equals_kuma_gateway_goldens() -> None:
    # Kuma's case: an HTTP listener (tags protocol: http) and a TCP one; the policy selects
    # the HTTP one by its tags.
    listeners = (
        "conf: {listeners: [{protocol: HTTP, port: 8080, tags: {protocol: http}},"
        " {protocol: TCP, port: 8081, tags: {protocol: tcp}}]}"
    )
    engine = engine_with(
        BASE.replace("conf: {listeners: [{protocol: HTTP, port: 8080}]}", listeners), RATE_LIMIT
    )
    listener = golden("meshratelimit-basic.gateway.listener.golden.yaml")
    as_this_project_serves("listeners", listener)
    assert served(engine, types.LISTENER, LISTENER, listener_pb2.Listener) == listener
    routes = served(engine, types.ROUTE, ROUTES, route_pb2.RouteConfiguration)
    for route in routes["virtualHosts"][0]["routes"]:
        route.pop("name")  # Kuma's golden routes a MeshGatewayRoute, whose routes have none
    assert routes == golden("meshratelimit-basic.gateway.routes.golden.yaml")


HEALTH_CHECK = """\
type: MeshHealthCheck
mesh: default
name: gateway-checks
spec:
  targetRef: {kind: MeshGateway, name: sample-gateway}
  to:
    - targetRef: {kind: Mesh}
      default:
        interval: 10s
        timeout: 2s
        unhealthyThreshold: 3
        healthyThreshold: 1
        initialJitter: 13s
        intervalJitter: 15s
        intervalJitterPercent: 10
        healthyPanicThreshold: "62.9"
        failTrafficOnPanic: true
        eventLogPath: /tmp/log.txt
        alwaysLogHealthCheckFailures: false
        noTrafficInterval: 16s
        reuseConnection: true
        http:
          disabled: false
          path: /health
          requestHeadersToAdd:
            add: [{name: x-some-header, value: value}]
            set: [{name: x-some-other-header, value: value}]
          expectedStatuses: [200, 201]
"""


def test_meshhealthcheck_equals_kuma_gateway_golden() -> None:
    # Kuma's case: the listeners of meshratelimit's (the check's rules are per listener
    # hostname, ``*`` on an HTTP port).
    listeners = (
        "conf: {listeners: [{protocol: HTTP, port: 8080, tags: {protocol: http}},"
        " {protocol: TCP, port: 8081, tags: {protocol: tcp}}]}"
    )
    engine = engine_with(
        BASE.replace("conf: {listeners: [{protocol: HTTP, port: 8080}]}", listeners), HEALTH_CHECK
    )
    document = yaml.safe_load(
        (KUMA / "meshhealthcheck-basic.gateway_cluster.golden.yaml").read_text()
    )
    (item,) = document["resources"]
    expected = item["resource"]
    expected.pop("@type")
    assert served(engine, types.CLUSTER, item["name"], cluster_pb2.Cluster) == expected


ACCESS_LOG = """\
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: gateway
networking:
  address: 127.0.0.1
  gateway: {type: BUILTIN, tags: {kuma.io/service: gateway}}
---
type: MeshGateway
mesh: default
name: gateway
selectors: [{match: {kuma.io/service: gateway}}]
conf: {listeners: [{protocol: HTTP, port: 8080}]}
---
type: MeshAccessLog
mesh: default
name: gateway-logs
spec:
  targetRef: {kind: Mesh, proxyTypes: [Gateway]}
  from:
    - targetRef: {kind: Mesh}
      default: {backends: [{type: File, file: {path: /tmp/from-log}}]}
  to:
    - targetRef: {kind: Mesh}
      default: {backends: [{type: File, file: {path: /tmp/to-log}}]}
"""


def test_meshaccesslog_equals_kuma_gateway_golden() -> None:
    engine = Engine()
    engine.apply_now(events(decode(ACCESS_LOG)))
    listener = golden("meshaccesslog-basic-gateway.gateway.listener.golden.yaml")
    as_this_project_serves("listeners", listener)
    body = engine.subscribe("default.gateway").resources(types.LISTENER)["gateway:HTTP:8080"].body
    found = json.loads(json_format.MessageToJson(listener_pb2.Listener.FromString(body)))
    assert found == listener
