"""MeshLoadBalancingStrategy's Envoy change on outbound clusters and routes, compared with
Kuma's plugin golden files (pkg/plugins/policies/meshloadbalancingstrategy/plugin/v1alpha1/
testdata/basic.clusters.golden.yaml and basic.listeners.golden.yaml: the same ``lbPolicy``,
LB configs and route hash policies for the same rules)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.policies import outbound_fingerprint, resolve
from kuma.policies.meshloadbalancingstrategy import MeshLoadBalancingStrategy
from kuma.resources import Dataplane, DecodeError, from_document, validate
from kuma.xds.generate import StaticMeshView, generate_proxy, types

SERVICES = {"backend": 27777, "payment": 27778, "frontend": 27779}

#: Kuma's "basic" case: one to-rule per service.
BASIC: dict[str, dict[str, Any]] = {
    "backend": {"loadBalancer": {"type": "Random"}},
    "frontend": {
        "loadBalancer": {"type": "LeastRequest", "leastRequest": {"activeRequestBias": "10.1"}}
    },
    "payment": {
        "loadBalancer": {
            "type": "RingHash",
            "ringHash": {
                "minRingSize": 100,
                "maxRingSize": 1000,
                "hashFunction": "MurmurHash2",
                "hashPolicies": [
                    {
                        "type": "QueryParameter",
                        "queryParameter": {"name": "queryparam"},
                        "terminal": True,
                    },
                    {"type": "Connection", "connection": {"sourceIP": True}, "terminal": False},
                ],
            },
        }
    },
}


def _dataplane(name: str, service: str, outbounds: bool) -> Dataplane:
    networking: dict[str, Any] = {
        "address": "10.0.0.1",
        "inbound": [
            {"port": 10000, "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"}}
        ],
    }
    if outbounds:
        networking["outbound"] = [
            {"port": port, "tags": {"kuma.io/service": name}} for name, port in SERVICES.items()
        ]
    resource = from_document(
        {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}
    )
    assert isinstance(resource, Dataplane)
    return resource


def _policy(defaults: dict[str, dict[str, Any]]) -> MeshLoadBalancingStrategy:
    policy = from_document(
        {
            "type": "MeshLoadBalancingStrategy",
            "mesh": "default",
            "name": "lb",
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [
                    {"targetRef": {"kind": "MeshService", "name": service}, "default": default}
                    for service, default in defaults.items()
                ],
            },
        }
    )
    assert isinstance(policy, MeshLoadBalancingStrategy)
    assert validate(policy) == []
    return policy


def _generate(defaults: dict[str, dict[str, Any]]) -> dict[str, Any]:
    policy = _policy(defaults)
    web = _dataplane("web-1", "web", outbounds=True)
    others = [_dataplane(f"{name}-1", name, outbounds=False) for name in SERVICES]
    matched = resolve(web, {"MeshLoadBalancingStrategy": [policy]})
    return generate_proxy(web, StaticMeshView([web, *others]), 9901, policies=matched)


def _plain(message: Any) -> dict[str, Any]:
    return dict(json.loads(json_format.MessageToJson(message)))


def _lb(cluster: dict[str, Any]) -> dict[str, Any]:
    keys = ("lbPolicy", "leastRequestLbConfig", "ringHashLbConfig", "maglevLbConfig")
    return {key: cluster[key] for key in keys if key in cluster}


def _hash_policies(resources: dict[str, Any], port: int) -> list[Any]:
    listener = _plain(resources[types.LISTENER][f"outbound:127.0.0.1:{port}"])
    manager = listener["filterChains"][0]["filters"][0]["typedConfig"]
    routes = [r for host in manager["routeConfig"]["virtualHosts"] for r in host["routes"]]
    assert routes
    return [route["route"].get("hashPolicy") for route in routes]


def test_kuma_basic_case_clusters_and_routes() -> None:
    resources = _generate(BASIC)
    clusters = {name: _plain(resources[types.CLUSTER][name]) for name in SERVICES}
    assert _lb(clusters["backend"]) == {"lbPolicy": "RANDOM"}
    assert _lb(clusters["frontend"]) == {
        "lbPolicy": "LEAST_REQUEST",
        "leastRequestLbConfig": {"activeRequestBias": {"defaultValue": 10.1}},
    }
    assert _lb(clusters["payment"]) == {
        "lbPolicy": "RING_HASH",
        "ringHashLbConfig": {
            "hashFunction": "MURMUR_HASH_2",
            "maximumRingSize": "1000",
            "minimumRingSize": "100",
        },
    }
    assert _hash_policies(resources, SERVICES["payment"]) == [
        [
            {"queryParameter": {"name": "queryparam"}, "terminal": True},
            {"connectionProperties": {"sourceIp": True}},
        ]
    ]
    # Random balances without hashing: the backend's routes are left alone.
    assert _hash_policies(resources, SERVICES["backend"]) == [None]


def test_maglev_round_robin_and_least_request_choice_count() -> None:
    resources = _generate(
        {
            "backend": {
                "loadBalancer": {
                    "type": "Maglev",
                    "maglev": {
                        "tableSize": 1021,
                        "hashPolicies": [
                            {"type": "Header", "header": {"name": "x-user"}},
                            {"type": "Cookie", "cookie": {"name": "s", "ttl": "1s", "path": "/a"}},
                            {"type": "FilterState", "filterState": {"key": "k"}},
                        ],
                    },
                }
            },
            "payment": {"loadBalancer": {"type": "RoundRobin"}},
            "frontend": {
                "loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": 3}}
            },
        }
    )
    clusters = {name: _plain(resources[types.CLUSTER][name]) for name in SERVICES}
    assert _lb(clusters["backend"]) == {
        "lbPolicy": "MAGLEV",
        "maglevLbConfig": {"tableSize": "1021"},
    }
    assert _lb(clusters["payment"]) == {}  # ROUND_ROBIN is Envoy's default (0)
    assert _lb(clusters["frontend"]) == {
        "lbPolicy": "LEAST_REQUEST",
        "leastRequestLbConfig": {"choiceCount": 3},
    }
    assert _hash_policies(resources, SERVICES["backend"]) == [
        [
            {"header": {"headerName": "x-user"}},
            {"cookie": {"name": "s", "ttl": "1s", "path": "/a"}},
            {"filterState": {"key": "k"}},
        ]
    ]


def test_locality_awareness_shapes_the_cluster_only_through_affinity_tags() -> None:
    # Kuma: with affinity tags the cluster weighs localities; the rest of localityAwareness
    # shapes the ClusterLoadAssignment (tests/policies/test_locality_aware.py), never the
    # listener.
    locality = {
        "disabled": False,
        "localZone": {"affinityTags": [{"key": "k8s/node", "weight": 9}]},
        "crossZone": {"failover": [{"to": {"type": "Any"}}]},
    }
    aware = _generate({"backend": {"localityAwareness": locality}})
    other = _generate({"payment": {"localityAwareness": locality}})
    listener = "outbound:127.0.0.1:27777"
    assert _plain(aware[types.LISTENER][listener]) == _plain(other[types.LISTENER][listener])
    cluster = _plain(aware[types.CLUSTER]["backend"])
    assert cluster.pop("commonLbConfig") == {"localityWeightedLbConfig": {}}
    assert cluster == _plain(other[types.CLUSTER]["backend"])


def test_shared_outbounds_are_keyed_by_what_the_hooks_read() -> None:
    """Clusters are keyed by ``loadBalancer`` and whether affinity tags are given, listeners
    by hash-routed ``loadBalancer`` only; the rest of ``localityAwareness`` keys neither (it
    keys the ClusterLoadAssignment: ``locality_aware.LocalityShape``)."""
    web = _dataplane("web-1", "web", outbounds=True)

    def fingerprint(default: dict[str, Any]) -> Any:
        matched = resolve(web, {"MeshLoadBalancingStrategy": [_policy({"backend": default})]})
        return outbound_fingerprint(matched, "backend")

    random = fingerprint({"loadBalancer": {"type": "Random"}})
    least = fingerprint({"loadBalancer": {"type": "LeastRequest"}})
    ring = fingerprint(BASIC["payment"])
    aware = fingerprint(
        {"loadBalancer": {"type": "Random"}, "localityAwareness": {"disabled": True}}
    )
    assert len({random.cluster, least.cluster, ring.cluster}) == 3
    assert random.listener == least.listener != ring.listener
    affinity = fingerprint(
        {
            "loadBalancer": {"type": "Random"},
            "localityAwareness": {"localZone": {"affinityTags": [{"key": "k8s/node"}]}},
        }
    )
    assert aware == random
    assert affinity.listener == random.listener
    assert affinity.cluster != random.cluster


@pytest.mark.parametrize(
    ("load_balancer", "error"),
    [
        # Kuma's schema bounds (its REST decoder checks them before its validator).
        ({"type": "LeastRequest", "leastRequest": {"choiceCount": 1}}, "choiceCount"),
        ({"type": "RingHash", "ringHash": {"minRingSize": 0}}, "minRingSize"),
        ({"type": "RingHash", "ringHash": {"maxRingSize": 8_000_001}}, "maxRingSize"),
        ({"type": "Maglev", "maglev": {"tableSize": 5_000_012}}, "tableSize"),
        ({"type": "Sticky"}, "loadBalancer.type"),
    ],
)
def test_values_outside_kuma_schema_are_refused(load_balancer: dict[str, Any], error: str) -> None:
    document = {
        "type": "MeshLoadBalancingStrategy",
        "mesh": "default",
        "name": "lb",
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"loadBalancer": load_balancer}}],
        },
    }
    with pytest.raises(DecodeError, match=r"^spec\.to\[0\]\.default\.loadBalancer\.") as raised:
        from_document(document)
    assert error in str(raised.value)


def test_a_maglev_table_size_that_envoy_would_refuse_is_a_violation() -> None:
    maglev = {"type": "Maglev", "maglev": {"tableSize": 1024}}
    policy = from_document(
        {
            "type": "MeshLoadBalancingStrategy",
            "mesh": "default",
            "name": "lb",
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {"loadBalancer": maglev}}],
            },
        }
    )
    assert [(v.field, v.message) for v in validate(policy)] == [
        ("spec.to[0].default.loadBalancer.maglev.tableSize", "must be a prime number")
    ]
