"""Kuma's policies at the ZoneEgress, against Kuma v2.7.29's plugin goldens for the same input:
``meshfaultinjection/plugin/v1alpha1/testdata/egress_basic_listener.golden.yaml`` and
``meshratelimit/plugin/v1alpha1/testdata/basic_egress.golden.yaml`` (the filters and per-route
config of each external service's chain; Kuma's tests build the rest of the chain by hand, so
the rest is ``test_zone_egress_generate.py``'s), and the matching (``kuma.policies.egress``:
Kuma's ``EgressMatchedPolicies``, against its matcher goldens)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.policies.egress import (
    EGRESS_INBOUND,
    egress_policies,
    egress_rules,
    selects_any,
    service_tags,
)
from kuma.resources import from_document, validate
from kuma.resources.model import ExternalService, Policy, ZoneEgress
from kuma.resources.policy import POLICY_KINDS
from kuma.xds.generate._pb import HCM_FILTER
from kuma.xds.generate.external import resolve_endpoints
from kuma.xds.generate.zone_egress import EgressService, egress_permissions, generate_zone_egress

ROUTER = "envoy.filters.http.router"
RBAC = ("envoy.filters.http.rbac", "envoy.filters.network.rbac")
FAULTS = [
    {
        "abort": {"httpStatus": 444, "percentage": 12},
        "delay": {"value": "55s", "percentage": "55"},
        "responseBandwidth": {"limit": "111Mbps", "percentage": "62.9"},
    }
]
#: The golden's fault filter (its header matcher only for the ``frontend`` rule).
FAULT_CONFIG = {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
    "abort": {"httpStatus": 444, "percentage": {"numerator": 12}},
    "delay": {"fixedDelay": "55s", "percentage": {"numerator": 55}},
    "responseRateLimit": {
        "fixedLimit": {"limitKbps": "111000"},
        "percentage": {"denominator": "TEN_THOUSAND", "numerator": 6290},
    },
}
FRONTEND_HEADER = {
    "name": "x-kuma-tags",
    "stringMatch": {"safeRegex": {"regex": ".*&kuma.io/service=[^&]*frontend[,&].*"}},
}
RATE_LIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3."
RATE_LIMIT_ROUTE = {
    "@type": RATE_LIMIT_TYPE + "LocalRateLimit",
    "filterEnabled": {"defaultValue": {"numerator": 100}, "runtimeKey": "local_rate_limit_enabled"},
    "filterEnforced": {
        "defaultValue": {"numerator": 100},
        "runtimeKey": "local_rate_limit_enforced",
    },
    "statPrefix": "rate_limit",
    "tokenBucket": {"fillInterval": "10s", "maxTokens": 100, "tokensPerFill": 100},
}
TCP_RATE_LIMIT = {
    "name": "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
    "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3."
        "LocalRateLimit",
        "statPrefix": "tcp_rate_limit",
        "tokenBucket": {"fillInterval": "22s", "maxTokens": 22, "tokensPerFill": 22},
    },
}


def _policy(kind: str, mesh: str, name: str, spec: dict[str, Any]) -> Policy:
    policy = from_document({"type": kind, "mesh": mesh, "name": name, "spec": spec})
    assert isinstance(policy, Policy)
    assert not validate(policy), validate(policy)
    return policy


def _service(mesh: str, service: str, protocol: str, policies: list[Policy]) -> EgressService:
    resource = from_document(
        {
            "type": "ExternalService",
            "mesh": mesh,
            "name": service,
            "networking": {"address": f"{service}.org:443"},
            "tags": {"kuma.io/service": service, "kuma.io/protocol": protocol},
        }
    )
    assert isinstance(resource, ExternalService)
    by_kind: dict[str, list[Policy]] = {}
    for policy in policies:
        by_kind.setdefault(policy.TYPE, []).append(policy)
    matched = egress_policies(service_tags(service), by_kind)
    endpoints = resolve_endpoints({service: resource}, {}, mesh)
    return EgressService(mesh, service, protocol, endpoints, egress_permissions(matched), matched)


def _chains(services: list[EgressService]) -> dict[str, dict[str, Any]]:
    egress = from_document(
        {"type": "ZoneEgress", "name": "e", "networking": {"address": "192.168.0.1", "port": 10002}}
    )
    assert isinstance(egress, ZoneEgress)
    listener, _ = generate_zone_egress(egress, services)
    assert listener is not None
    document = json_format.MessageToDict(listener)
    return {chain["name"]: chain for chain in document["filterChains"]}


def _filters(chain: dict[str, Any]) -> list[dict[str, Any]]:
    """The chain's network filters without MeshTrafficPermission's (Kuma's tests of other
    kinds have none: its plugin runs after theirs and puts its filter in front)."""
    return [f for f in chain["filters"] if f["name"] not in RBAC]


def _http(chain: dict[str, Any]) -> dict[str, Any]:
    (manager,) = [f["typedConfig"] for f in chain["filters"] if f["name"] == HCM_FILTER]
    return dict(manager)


def _http_filters(chain: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in _http(chain)["httpFilters"] if f["name"] not in RBAC]


def test_fault_injection_at_the_egress_matches_kumas_golden() -> None:
    frontend = _policy(
        "MeshFaultInjection",
        "mesh-1",
        "mfi-1",
        {
            "targetRef": {"kind": "MeshService", "name": "external-service-1"},
            "from": [
                {
                    "targetRef": {"kind": "MeshService", "name": "frontend"},
                    "default": {"http": FAULTS},
                }
            ],
        },
    )
    everyone = _policy(
        "MeshFaultInjection",
        "mesh-2",
        "mfi-2",
        {
            "targetRef": {"kind": "MeshService", "name": "external-service-2"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"http": FAULTS}}],
        },
    )
    chains = _chains(
        [
            _service("mesh-1", "external-service-1", "http", [frontend]),
            _service("mesh-1", "external-service-2", "http", [frontend]),
            _service("mesh-2", "external-service-1", "tcp", [everyone]),
            _service("mesh-2", "external-service-2", "http", [everyone]),
        ]
    )
    fault = "envoy.filters.http.fault"
    first = _http_filters(chains["external-service-1_mesh-1"])
    assert [f["name"] for f in first] == [fault, ROUTER]
    assert first[0]["typedConfig"] == {**FAULT_CONFIG, "headers": [FRONTEND_HEADER]}
    assert _http_filters(chains["external-service-2_mesh-2"])[0] == {
        "name": fault,
        "typedConfig": FAULT_CONFIG,
    }
    # Not selected (mesh-1's other service), or TCP: no fault filter.
    assert [f["name"] for f in _http_filters(chains["external-service-2_mesh-1"])] == [ROUTER]
    assert fault not in str(chains["external-service-1_mesh-2"])


def test_rate_limit_at_the_egress_matches_kumas_golden() -> None:
    http = {"local": {"http": {"requestRate": {"num": 100, "interval": "10s"}}}}
    tcp = {"local": {"tcp": {"connectionRate": {"num": 22, "interval": "22s"}}}}

    def limit(mesh: str, name: str, service: str, conf: dict[str, Any]) -> Policy:
        target = {"kind": "MeshService", "name": service}
        spec = {"targetRef": target, "from": [{"targetRef": {"kind": "Mesh"}, "default": conf}]}
        return _policy("MeshRateLimit", mesh, name, spec)

    mesh_1 = [limit("mesh-1", "mrl-1", "external-service-1", http)]
    mesh_2 = [
        limit("mesh-2", "mrl-2", "external-service-1", tcp),
        limit("mesh-2", "mrl-3", "external-service-2", http),
    ]
    chains = _chains(
        [
            _service("mesh-1", "external-service-1", "http", mesh_1),
            _service("mesh-1", "external-service-2", "tcp", mesh_1),
            _service("mesh-2", "external-service-1", "tcp", mesh_2),
            _service("mesh-2", "external-service-2", "http", mesh_2),
        ]
    )
    filter_name = "envoy.filters.http.local_ratelimit"
    for name in ("external-service-1_mesh-1", "external-service-2_mesh-2"):
        chain = chains[name]
        assert [f["name"] for f in _http_filters(chain)] == [filter_name, ROUTER]
        assert _http_filters(chain)[0]["typedConfig"] == {
            "@type": RATE_LIMIT_TYPE + "LocalRateLimit",
            "statPrefix": "rate_limit",
        }
        (host,) = _http(chain)["routeConfig"]["virtualHosts"]
        (route,) = host["routes"]
        assert route["typedPerFilterConfig"] == {filter_name: RATE_LIMIT_ROUTE}
    # TCP: the network filter in front of the TCP proxy (behind the RBAC filter, which
    # Kuma's MeshTrafficPermission plugin puts first after this one ran).
    tcp_chain = chains["external-service-1_mesh-2"]
    assert [f["name"] for f in tcp_chain["filters"]] == [
        "envoy.filters.network.rbac",
        TCP_RATE_LIMIT["name"],
        "envoy.filters.network.tcp_proxy",
    ]
    assert _filters(tcp_chain)[0] == TCP_RATE_LIMIT
    # MeshTrafficPermission's network filter counts under the egress listener's name (Kuma's
    # StatsName there; apply-egress.golden.yaml: ``test_listener.``).
    assert tcp_chain["filters"][0]["typedConfig"]["statPrefix"] == "inbound_192_168_0_1_10002."
    assert [f["name"] for f in _filters(chains["external-service-2_mesh-1"])] == [
        "envoy.filters.network.tcp_proxy"
    ]


def test_matching_is_by_the_services_name_in_kumas_order() -> None:
    def fault(name: str, target: dict[str, Any], status: int) -> Policy:
        conf = {"http": [{"abort": {"httpStatus": status, "percentage": 100}}]}
        spec = {"targetRef": target, "from": [{"targetRef": {"kind": "Mesh"}, "default": conf}]}
        return _policy("MeshFaultInjection", "default", name, spec)

    # ``from`` needs a top-level targetRef without gateways (proxyTypes is not read here).
    mesh_wide = fault("a", {"kind": "Mesh", "proxyTypes": ["Sidecar"]}, 500)
    mine = fault("b", {"kind": "MeshService", "name": "httpbin"}, 418)
    other = fault("c", {"kind": "MeshService", "name": "other"}, 503)
    by_protocol = fault(
        "d",
        {"kind": "MeshSubset", "proxyTypes": ["Sidecar"], "tags": {"kuma.io/protocol": "http"}},
        502,
    )
    # The tags the egress matches by: the service name only (Kuma's proxy builder).
    matched = egress_policies(
        service_tags("httpbin"), {"MeshFaultInjection": [mine, other, by_protocol, mesh_wide]}
    )
    kind = matched.get("MeshFaultInjection")
    assert kind is not None
    # Mesh before MeshService (Kuma's ByTargetRef); ``other`` and the tag subset not at all.
    assert [p.name for p in kind.policies] == ["a", "b"]
    rules = kind.from_rules[EGRESS_INBOUND]
    # One rule for every client; the more specific policy merged last (its fault is in it).
    (rule,) = rules
    assert 418 in [f.abort.http_status for f in kind.conf(rule).http]
    # Kinds Kuma does not apply at the egress are not matched at all.
    timeout = _policy(
        "MeshTimeout",
        "default",
        "t",
        {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "5s"}}],
        },
    )
    assert not egress_policies(service_tags("httpbin"), {"MeshTimeout": [timeout]})
    assert not selects_any(timeout, ["httpbin"])
    assert selects_any(mine, ["db", "httpbin"])
    assert not selects_any(mine, ["db"])


def test_load_balancing_localities_at_the_egress_match_kumas_golden() -> None:
    """``meshloadbalancingstrategy/.../testdata/egress.clusters.golden.yaml`` and
    ``egress_basic.clusters.golden.yaml``, their static cluster: an egress in zone-1, the
    external service's endpoints tagged zone-1 and zone-2. CrossZone failover to Any: zone-1
    local (weight 1), zone-2 at priority 1, factor 200."""
    resources = {}
    for index, zone in ((1, "zone-1"), (2, "zone-2")):
        resource = from_document(
            {
                "type": "ExternalService",
                "mesh": "mesh-2",
                "name": f"es-{index}",
                "networking": {"address": f"192.168.0.{index}:8080"},
                "tags": {
                    "kuma.io/service": "static-cluster",
                    "kuma.io/protocol": "http",
                    "kuma.io/zone": zone,
                },
            }
        )
        assert isinstance(resource, ExternalService)
        resources[resource.name] = resource
    endpoints = resolve_endpoints(resources, {}, "mesh-2")

    def cluster(*policies: Policy) -> dict[str, Any]:
        matched = egress_policies(
            service_tags("static-cluster"), {"MeshLoadBalancingStrategy": policies}
        )
        service = EgressService("mesh-2", "static-cluster", "http", endpoints, None, matched)
        egress = from_document(
            {
                "type": "ZoneEgress",
                "name": "e",
                "zone": "zone-1",
                "networking": {"address": "127.0.0.1", "port": 10002},
            }
        )
        assert isinstance(egress, ZoneEgress)
        _, (built,) = generate_zone_egress(egress, [service])
        return dict(json_format.MessageToDict(built)["loadAssignment"])

    def strategy(name: str, top: dict[str, Any], to: str, conf: dict[str, Any]) -> Policy:
        target = {"kind": "Mesh"} if to == "Mesh" else {"kind": "MeshService", "name": to}
        spec = {"targetRef": top, "to": [{"targetRef": target, "default": conf}]}
        return _policy("MeshLoadBalancingStrategy", "mesh-2", name, spec)

    any_zone = {"localityAwareness": {"crossZone": {"failover": [{"to": {"type": "Any"}}]}}}
    shaped = cluster(strategy("lb", {"kind": "Mesh"}, "static-cluster", any_zone))
    assert shaped["policy"] == {"overprovisioningFactor": 200}
    groups = [
        (g["locality"], g.get("priority", 0), g.get("loadBalancingWeight"), len(g["lbEndpoints"]))
        for g in shaped["endpoints"]
    ]
    assert groups == [({"zone": "zone-1"}, 0, 1, 1), ({"zone": "zone-2"}, 1, None, 1)]
    addresses = [
        g["lbEndpoints"][0]["endpoint"]["address"]["socketAddress"]["address"]
        for g in shaped["endpoints"]
    ]
    assert addresses == ["192.168.0.1", "192.168.0.2"]
    plain = cluster()
    assert "policy" not in plain
    # egress_basic.clusters.golden.yaml: ``disabled: false`` alone (no localZone/crossZone)
    # keeps the endpoints and puts other zones' localities at priority 1, no factor.
    kept = {"localityAwareness": {"disabled": False}}
    enabled = cluster(strategy("lb", {"kind": "Mesh"}, "Mesh", kept))
    assert "policy" not in enabled
    assert [(g["locality"], g.get("priority", 0)) for g in enabled["endpoints"]] == [
        ({"zone": "zone-1"}, 0),
        ({"zone": "zone-2"}, 1),
    ]
    assert [g.get("priority", 0) for g in plain["endpoints"]] == [0, 0]
    # Kuma: only the rule for every client counts (a top-level MeshService's rule is for
    # that service's clients), ``disabled: true`` changes nothing, and another service's rule
    # does not apply.
    web_only = strategy("lb", {"kind": "MeshService", "name": "web"}, "Mesh", any_zone)
    assert cluster(web_only) == plain
    disabled = {"localityAwareness": {"disabled": True}}
    assert cluster(strategy("lb", {"kind": "Mesh"}, "Mesh", disabled)) == plain
    assert cluster(strategy("lb", {"kind": "Mesh"}, "other", any_zone)) == plain
    # A to-Mesh rule selects it too.
    assert cluster(strategy("lb", {"kind": "Mesh"}, "Mesh", any_zone)) == shaped


#: The external service of Kuma's matcher goldens (core/matchers/testdata/egressmatchedpolicies).
KUMA_ES_TAGS = {
    "kuma.io/service": "external-database",
    "kuma.io/protocol": "http",
    "kuma.io/zone": "zone-1",
    "version": "v1",
}


def _matched(
    kind: str, policies: list[Policy]
) -> list[tuple[list[tuple[str, str, bool]], Any, list[str]]]:
    result = egress_rules(POLICY_KINDS[kind], policies, KUMA_ES_TAGS)
    assert result is not None
    _, rules = result
    return [
        ([(t.key, t.value, t.negated) for t in rule.subset], dict(rule.conf), list(rule.origins))
        for rule in rules
    ]


def test_matching_equals_kumas_egress_matcher_goldens() -> None:
    """Kuma's ``EgressMatchedPolicies`` tests, called with the ExternalService's own tags:
    fromrules/01 (MeshTrafficPermission), torules/01 and 02 (MeshLoadBalancingStrategy, ``to``
    turned into ``from`` under the top-level targetRef), fromtorules/01 (a kind with both)."""
    service = "kuma.io/service"
    mtp_1 = _policy(
        "MeshTrafficPermission",
        "mesh-1",
        "mtp-1",
        {
            "targetRef": {
                "kind": "MeshServiceSubset",
                "name": "external-database",
                "tags": {"version": "v1"},
            },
            "from": [
                {
                    "targetRef": {"kind": "MeshService", "name": "backend"},
                    "default": {"action": "Allow"},
                },
                {
                    "targetRef": {"kind": "MeshService", "name": "orders"},
                    "default": {"action": "AllowWithShadowDeny"},
                },
            ],
        },
    )
    mtp_2 = _policy(
        "MeshTrafficPermission",
        "mesh-1",
        "mtp-2",
        {
            "targetRef": {"kind": "Mesh"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Deny"}}],
        },
    )
    assert _matched("MeshTrafficPermission", [mtp_2, mtp_1]) == [
        ([(service, "orders", False)], {"action": "AllowWithShadowDeny"}, ["mtp-1", "mtp-2"]),
        ([(service, "backend", False)], {"action": "Allow"}, ["mtp-1", "mtp-2"]),
        ([(service, "orders", True)], {"action": "Deny"}, ["mtp-2"]),
        ([(service, "backend", True)], {"action": "Deny"}, ["mtp-2"]),
    ]

    def strategy(name: str, top: dict[str, Any], to: list[tuple[dict[str, Any], bool]]) -> Policy:
        items = [
            {"targetRef": ref, "default": {"localityAwareness": {"disabled": disabled}}}
            for ref, disabled in to
        ]
        return _policy("MeshLoadBalancingStrategy", "mesh-1", name, {"targetRef": top, "to": items})

    database = {"kind": "MeshService", "name": "external-database"}
    backend = {"kind": "MeshService", "name": "backend"}
    backend_v2 = {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v2"}}
    v2 = [(service, "backend", False), ("version", "v2", False)]
    not_v2 = [(service, "backend", False), ("version", "v2", True)]

    def locality(disabled: bool) -> dict[str, Any]:
        return {"localityAwareness": {"disabled": disabled}}

    torules_01 = [
        strategy("mlbs-1", backend, [(database, True)]),
        strategy("mlbs-2", backend_v2, [(database, False)]),
    ]
    assert _matched("MeshLoadBalancingStrategy", torules_01) == [
        (v2, locality(False), ["mlbs-1", "mlbs-2"]),
        (not_v2, locality(True), ["mlbs-1"]),
    ]
    other = {"kind": "MeshService", "name": "some-other-service"}
    torules_02 = [
        strategy("mlbs-1", backend, [(database, True), ({"kind": "Mesh"}, False)]),
        strategy(
            "mlbs-2", backend_v2, [(database, False), ({"kind": "Mesh"}, True), (other, False)]
        ),
    ]
    assert _matched("MeshLoadBalancingStrategy", torules_02) == [
        (v2, locality(True), ["mlbs-1", "mlbs-2"]),
        (not_v2, locality(False), ["mlbs-1"]),
    ]

    def timeout(name: str, top: dict[str, Any], with_to: bool) -> Policy:
        spec: dict[str, Any] = {
            "targetRef": top,
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "10s"}}],
        }
        if with_to:
            spec["to"] = [{"targetRef": backend, "default": {"idleTimeout": "20s"}}]
        return _policy("MeshTimeout", "mesh-1", name, spec)

    subset_v1 = {
        "kind": "MeshServiceSubset",
        "name": "external-database",
        "tags": {"version": "v1"},
    }
    fromtorules = [timeout("mt-1", subset_v1, True), timeout("mt-2", {"kind": "Mesh"}, False)]
    # Kuma's golden: one rule for every client from both (its confs are empty, ours a
    # timeout each: the from-rules, not mt-1's ``to``).
    assert _matched("MeshTimeout", fromtorules) == [([], {"idleTimeout": "10s"}, ["mt-1", "mt-2"])]
