"""MeshLoadBalancingStrategy ``localityAwareness`` compared with Kuma's plugin goldens
(pkg/plugins/policies/meshloadbalancingstrategy/plugin/v1alpha1/testdata/
locality_aware_{basic,no_cross_zone,cross_zone,split}.{endpoints,clusters}.golden.yaml and
basic.endpoints.golden.yaml): the same consumer (zone-1, k8s.io/node node1, k8s.io/az test,
k8s.io/region test) and the same backend endpoints in zones 1-5 give the same localities,
locality weights, priorities, endpoints and overprovisioning factor."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.policies import resolve
from kuma.policies.locality_aware import locality_shape
from kuma.resources import Dataplane, Mesh, from_document
from kuma.xds.generate import StaticMeshView, generate_proxy, types

from .test_meshloadbalancingstrategy import _policy

AFFINITY = [
    {"key": "k8s.io/node", "weight": 9000},
    {"key": "k8s.io/az", "weight": 900},
    {"key": "k8s.io/region", "weight": 90},
]
FAILOVER = [
    {"to": {"type": "AnyExcept", "zones": ["zone-3", "zone-4", "zone-5"]}},
    {"from": {"zones": ["zone-1"]}, "to": {"type": "Only", "zones": ["zone-3"]}},
    {"to": {"type": "Only", "zones": ["zone-4"]}},
]
#: Kuma's backend endpoints: (address, zone, extra tags).
BACKENDS = [
    ("192.168.1.1", "zone-1", {"k8s.io/node": "node1"}),
    ("192.168.1.2", "zone-1", {"k8s.io/node": "node2"}),
    ("192.168.1.3", "zone-1", {"k8s.io/az": "test"}),
    ("192.168.1.4", "zone-1", {"k8s.io/region": "test"}),
    ("192.168.1.5", "zone-2", {}),
    ("192.168.1.6", "zone-3", {}),
    ("192.168.1.7", "zone-4", {}),
    ("192.168.1.8", "zone-5", {}),
]
CONSUMER_TAGS = {
    "kuma.io/zone": "zone-1",
    "k8s.io/node": "node1",
    "k8s.io/az": "test",
    "k8s.io/region": "test",
}


def _dataplane(name: str, address: str, tags: dict[str, str], outbound: bool) -> Dataplane:
    networking: dict[str, Any] = {
        "address": address,
        "inbound": [{"port": 8080, "tags": {"kuma.io/protocol": "http", **tags}}],
    }
    if outbound:
        networking["outbound"] = [{"port": 27777, "tags": {"kuma.io/service": "backend"}}]
    resource = from_document(
        {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}
    )
    assert isinstance(resource, Dataplane)
    return resource


def _generate(
    default: dict[str, Any], consumer_tags: dict[str, str] = CONSUMER_TAGS, mesh: Mesh | None = None
) -> Any:
    policy = _policy({"backend": default})
    web = _dataplane("web-1", "10.0.0.1", {"kuma.io/service": "web", **consumer_tags}, True)
    backends = [
        _dataplane(
            f"b-{i}", address, {"kuma.io/service": "backend", "kuma.io/zone": zone, **extra}, False
        )
        for i, (address, zone, extra) in enumerate(BACKENDS)
    ]
    matched = resolve(web, {"MeshLoadBalancingStrategy": [policy]})
    return generate_proxy(web, StaticMeshView([web, *backends], mesh), 9901, policies=matched)


def _plain(message: Any) -> dict[str, Any]:
    return dict(json.loads(json_format.MessageToJson(message)))


def _localities(resources: Any) -> tuple[list[tuple[Any, ...]], Any]:
    """(zone, subZone, locality weight, priority, addresses) per locality, and the factor."""
    cla = _plain(resources[types.ENDPOINT]["backend"])
    found = [
        (
            group.get("locality", {}).get("zone"),
            group.get("locality", {}).get("subZone", ""),
            group.get("loadBalancingWeight"),
            group.get("priority", 0),
            [e["endpoint"]["address"]["socketAddress"]["address"] for e in group["lbEndpoints"]],
        )
        for group in cla["endpoints"]
    ]
    return found, cla.get("policy", {}).get("overprovisioningFactor")


def _cluster(resources: Any) -> dict[str, Any]:
    return _plain(resources[types.CLUSTER]["backend"])


#: Kuma's cross-zone priorities for FAILOVER (zone-5 is admitted by no entry: left out).
REMOTE = [
    ("zone-2", "", None, 1, ["192.168.1.5"]),
    ("zone-3", "", None, 2, ["192.168.1.6"]),
    ("zone-4", "", None, 3, ["192.168.1.7"]),
]


def test_kuma_locality_aware_basic() -> None:
    resources = _generate(
        {
            "loadBalancer": {"type": "Random"},
            "localityAwareness": {
                "localZone": {"affinityTags": AFFINITY},
                "crossZone": {"failover": FAILOVER, "failoverThreshold": {"percentage": "99"}},
            },
        }
    )
    assert _localities(resources) == (
        [
            ("zone-1", "", 1, 0, ["192.168.1.2"]),
            ("zone-1", "k8s.io/az=test", 900, 0, ["192.168.1.3"]),
            ("zone-1", "k8s.io/node=node1", 9000, 0, ["192.168.1.1"]),
            ("zone-1", "k8s.io/region=test", 90, 0, ["192.168.1.4"]),
            *REMOTE,
        ],
        100,  # int(100 / 99) * 100
    )
    cluster = _cluster(resources)
    assert cluster["commonLbConfig"] == {"localityWeightedLbConfig": {}}
    assert cluster["lbPolicy"] == "RANDOM"
    # Endpoint metadata is the shared CLA's (the tags but the service), as in the golden.
    first = _plain(resources[types.ENDPOINT]["backend"])["endpoints"][0]["lbEndpoints"][0]
    assert first["metadata"]["filterMetadata"]["envoy.lb"] == {
        "k8s.io/node": "node2",
        "kuma.io/protocol": "http",
        "kuma.io/zone": "zone-1",
    }


def test_kuma_locality_aware_no_cross_zone_leaves_other_zones_out() -> None:
    resources = _generate({"localityAwareness": {"localZone": {"affinityTags": AFFINITY}}})
    assert _localities(resources) == (
        [
            ("zone-1", "", 1, 0, ["192.168.1.2"]),
            ("zone-1", "k8s.io/az=test", 900, 0, ["192.168.1.3"]),
            ("zone-1", "k8s.io/node=node1", 9000, 0, ["192.168.1.1"]),
            ("zone-1", "k8s.io/region=test", 90, 0, ["192.168.1.4"]),
        ],
        200,
    )


def test_kuma_locality_aware_cross_zone_only() -> None:
    resources = _generate({"localityAwareness": {"crossZone": {"failover": FAILOVER}}})
    local = ["192.168.1.1", "192.168.1.2", "192.168.1.3", "192.168.1.4"]
    assert _localities(resources) == ([("zone-1", "", 1, 0, local), *REMOTE], 200)
    assert "commonLbConfig" not in _cluster(resources)  # no affinity tags: no locality weights


def test_kuma_default_weights_of_affinity_tags() -> None:
    # locality_aware_split: without weights the i-th of n tags weighs 9 * 10^(n - i - 1).
    unweighted = [{"key": tag["key"]} for tag in AFFINITY]
    resources = _generate(
        {
            "localityAwareness": {
                "localZone": {"affinityTags": unweighted},
                "crossZone": {"failover": FAILOVER},
            }
        }
    )
    assert _localities(resources)[0][:4] == [
        ("zone-1", "", 1, 0, ["192.168.1.2"]),
        ("zone-1", "k8s.io/az=test", 90, 0, ["192.168.1.3"]),
        ("zone-1", "k8s.io/node=node1", 900, 0, ["192.168.1.1"]),
        ("zone-1", "k8s.io/region=test", 9, 0, ["192.168.1.4"]),
    ]


def _by_zone(resources: Any) -> dict[str, int]:
    return {zone: priority for zone, _, _, priority, _ in _localities(resources)[0]}


def test_any_strategy_puts_other_zones_at_priority_1_unless_disabled() -> None:
    # Kuma's basic golden: a loadBalancer alone moves other zones' localities to priority 1.
    plain = _generate({"loadBalancer": {"type": "Random"}})
    assert _by_zone(plain) == {f"zone-{n}": int(n != 1) for n in range(1, 6)}
    assert _localities(plain)[1] is None  # the shared CLA's policy, untouched
    disabled = _generate({"localityAwareness": {"disabled": True}})
    assert set(_by_zone(disabled).values()) == {0}


def test_affinity_follows_the_consumer_and_a_from_entry_its_zone() -> None:
    conf = {
        "localityAwareness": {
            "localZone": {"affinityTags": [{"key": "k8s.io/node"}]},
            "crossZone": {"failover": FAILOVER},
        }
    }
    # Another node: node2 is the preferred locality.
    other = _generate(conf, {**CONSUMER_TAGS, "k8s.io/node": "node2"})
    assert ("zone-1", "k8s.io/node=node2", 9, 0, ["192.168.1.2"]) in _localities(other)[0]
    # A consumer in zone-2: zone-1 is remote now (priority 1), the entry from zone-1 is
    # skipped but keeps its position (zone-4 stays at 3), zone-3 is admitted by nothing.
    zone_2 = _generate(conf, {**CONSUMER_TAGS, "kuma.io/zone": "zone-2"})
    assert _by_zone(zone_2) == {"zone-1": 1, "zone-2": 0, "zone-4": 3}


def test_the_shape_keys_what_the_rewrite_reads() -> None:
    """Consumers differing only in tags the policy does not read share one shape (and so one
    CLA in the engine); a different value of an affinity tag or zone does not."""
    policy = _policy(
        {"backend": {"localityAwareness": {"localZone": {"affinityTags": AFFINITY[:1]}}}}
    )

    def shape(name: str, tags: dict[str, str]) -> Any:
        web = _dataplane(name, "10.0.0.9", {"kuma.io/service": "web", **tags}, True)
        return locality_shape(resolve(web, {"MeshLoadBalancingStrategy": [policy]}), "backend", web)

    base = shape("a", CONSUMER_TAGS)
    assert shape("b", {**CONSUMER_TAGS, "k8s.io/az": "other", "team": "x"}) == base
    assert shape("c", {**CONSUMER_TAGS, "k8s.io/node": "node2"}) != base
    assert shape("d", {**CONSUMER_TAGS, "kuma.io/zone": "zone-2"}) != base


def test_kuma_locality_aware_basic_egress_enabled() -> None:
    """locality_aware_basic_egress_enabled.endpoints.golden.yaml: in a mesh routing through
    zone egresses, every other zone's endpoint is in one locality ``egress_<hash>`` (the hash
    of the failover groups) at priority 1, those no failover entry admits (zone-5) included."""
    backend = {"name": "ca-1", "type": "builtin"}
    mesh = Mesh(
        name="default",
        mtls={"enabledBackend": "ca-1", "backends": [backend]},
        routing={"zoneEgress": True},
    )
    resources = _generate(
        {
            "loadBalancer": {"type": "Random"},
            "localityAwareness": {
                "localZone": {"affinityTags": AFFINITY},
                "crossZone": {"failover": FAILOVER},
            },
        },
        mesh=mesh,
    )
    remote = ["192.168.1.5", "192.168.1.6", "192.168.1.7", "192.168.1.8"]
    assert _localities(resources) == (
        [
            ("egress_+9ESnM2K", "", None, 1, remote),
            ("zone-1", "", 1, 0, ["192.168.1.2"]),
            ("zone-1", "k8s.io/az=test", 900, 0, ["192.168.1.3"]),
            ("zone-1", "k8s.io/node=node1", 9000, 0, ["192.168.1.1"]),
            ("zone-1", "k8s.io/region=test", 90, 0, ["192.168.1.4"]),
        ],
        200,
    )
