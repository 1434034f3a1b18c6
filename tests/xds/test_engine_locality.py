"""The engine and MeshLoadBalancingStrategy ``localityAwareness``: consumers with the same
locality shape (zone, values of the affinity tags) share one rewritten ClusterLoadAssignment;
a change of the policy re-sends only the CLAs it shapes, to the proxies it selects; an
endpoint change patches each shape's CLA without re-assembling anybody."""

from __future__ import annotations

from typing import Any

from envoy.config.endpoint.v3 import endpoint_pb2

from kuma.resources import from_document
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.engine.watches import Subscription

from .test_engine_policy_keys import event


def _dataplane(name: str, address: str, service: str, node: str, zone: str = "zone-1") -> Any:
    return from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": name,
            "networking": {
                "address": address,
                "inbound": [
                    {
                        "port": 8080,
                        "tags": {"kuma.io/service": service, "kuma.io/zone": zone, "node": node},
                    }
                ],
                "outbound": [
                    {"port": 20000, "tags": {"kuma.io/service": "api"}},
                    {"port": 20001, "tags": {"kuma.io/service": "db"}},
                ],
            },
        }
    )


def _policy(weight: int) -> Any:
    """Proxies of ``web`` prefer ``api`` endpoints on their node."""
    return from_document(
        {
            "type": "MeshLoadBalancingStrategy",
            "mesh": "default",
            "name": "locality",
            "spec": {
                "targetRef": {"kind": "MeshService", "name": "web"},
                "to": [
                    {
                        "targetRef": {"kind": "MeshService", "name": "api"},
                        "default": {
                            "localityAwareness": {
                                "localZone": {"affinityTags": [{"key": "node", "weight": weight}]}
                            }
                        },
                    }
                ],
            },
        }
    )


def _weights(watch: Subscription) -> dict[str, int]:
    """subZone → locality weight of the ``api`` CLA the proxy holds."""
    cla = endpoint_pb2.ClusterLoadAssignment.FromString(watch.resources(types.ENDPOINT)["api"].body)
    return {g.locality.sub_zone: g.load_balancing_weight.value for g in cla.endpoints}


def _started() -> tuple[Engine, dict[str, Subscription]]:
    engine = Engine()
    engine.apply_now(
        [
            event(_dataplane("api-1", "10.0.1.1", "api", "n1")),
            event(_dataplane("api-2", "10.0.1.2", "api", "n2")),
            event(_dataplane("db-1", "10.0.2.1", "db", "n1")),
            event(_dataplane("web-1", "10.0.0.1", "web", "n1")),
            event(_dataplane("web-2", "10.0.0.2", "web", "n1")),
            event(_dataplane("web-3", "10.0.0.3", "web", "n2")),
            event(_dataplane("other-1", "10.0.0.4", "other", "n1")),
            event(_policy(9000)),
        ]
    )
    watches = {n: engine.subscribe(f"default.{n}") for n in ("web-1", "web-2", "web-3", "other-1")}
    for watch in watches.values():
        watch.take_changes()
    return engine, watches


def test_consumers_of_one_shape_share_the_rewritten_assignment() -> None:
    _, watches = _started()
    api = {name: watch.resources(types.ENDPOINT)["api"] for name, watch in watches.items()}
    assert api["web-1"] is api["web-2"]  # same zone and node: one CLA object
    assert api["web-3"].version != api["web-1"].version  # another node
    assert _weights(watches["web-1"]) == {"": 1, "node=n1": 9000}
    assert _weights(watches["web-3"]) == {"": 1, "node=n2": 9000}
    # Not selected: the shared CLA, as without the policy.
    assert _weights(watches["other-1"]) == {"": 0}
    db = {watch.resources(types.ENDPOINT)["db"].version for watch in watches.values()}
    assert len(db) == 1  # the policy does not shape db: shared by all


def test_a_policy_change_resends_only_the_assignments_it_shapes() -> None:
    engine, watches = _started()
    clusters = {n: w.resources(types.CLUSTER)["api"] for n, w in watches.items()}
    stats = engine.apply_now([event(_policy(90))])
    assert stats.proxies_assembled == 3  # the proxies the policy selects
    for name in ("web-1", "web-2", "web-3"):
        # Only the api CLA: its cluster (locality weighted either way), db's CLA, the
        # listeners are the same resources.
        assert watches[name].take_changes() == {types.ENDPOINT: {"api"}}
        assert watches[name].resources(types.CLUSTER)["api"] is clusters[name]
    assert not watches["other-1"].has_changes
    assert _weights(watches["web-1"]) == {"": 1, "node=n1": 90}


def test_an_endpoint_change_patches_each_shape_without_reassembly() -> None:
    engine, watches = _started()
    stats = engine.apply_now([event(_dataplane("api-3", "10.0.1.3", "api", "n2"))])
    assert stats.proxies_assembled == 0
    for watch in watches.values():
        assert watch.take_changes() == {types.ENDPOINT: {"api"}}
    cla = endpoint_pb2.ClusterLoadAssignment.FromString(
        watches["web-3"].resources(types.ENDPOINT)["api"].body
    )
    preferred = next(g for g in cla.endpoints if g.locality.sub_zone == "node=n2")
    assert [e.endpoint.address.socket_address.address for e in preferred.lb_endpoints] == [
        "10.0.1.2",
        "10.0.1.3",
    ]
    web_1 = watches["web-1"].resources(types.ENDPOINT)["api"]
    assert web_1 is watches["web-2"].resources(types.ENDPOINT)["api"]


def test_a_mesh_routing_through_egresses_puts_other_zones_in_one_egress_locality() -> None:
    """Kuma's ``egressLocality``: with ``routing.zoneEgress`` every other zone's endpoint is in
    one locality ``egress_<hash>`` at priority 1 (without, ``localZone`` alone leaves them
    out); the engine follows the mesh turning it on and off."""
    engine, watches = _started()
    engine.apply_now([event(_dataplane("api-3", "10.0.1.3", "api", "n1", zone="zone-2"))])
    watch = watches["web-1"]

    def localities() -> list[tuple[str, str, int, list[str]]]:
        body = watch.resources(types.ENDPOINT)["api"].body
        cla = endpoint_pb2.ClusterLoadAssignment.FromString(body)
        return [
            (
                g.locality.zone,
                g.locality.sub_zone,
                g.priority,
                [e.endpoint.address.socket_address.address for e in g.lb_endpoints],
            )
            for g in cla.endpoints
        ]

    local = [("zone-1", "", 0, ["10.0.1.2"]), ("zone-1", "node=n1", 0, ["10.0.1.1"])]
    assert localities() == local
    backend = {"name": "ca-1", "type": "builtin"}
    mesh: dict[str, Any] = {
        "type": "Mesh",
        "name": "default",
        "mtls": {"enabledBackend": "ca-1", "backends": [backend]},
        "routing": {"zoneEgress": True},
    }
    engine.apply_now([event(from_document(mesh))])
    # No failover groups: the hash of "" (Kuma's egressLocality).
    assert localities() == [("egress_47DEQpj8", "", 1, ["10.0.1.3"]), *local]
    engine.apply_now([event(from_document({**mesh, "routing": {"zoneEgress": False}}))])
    assert localities() == local
