"""The engine invariant's check of MeshLoadBalancingStrategy's shared-outbound keys, on one
fixed scenario: two proxies of a mesh reach ``api`` under different strategies (RingHash
with a hash policy for one, Random for the other), so they may not share its cluster or its
outbound listener. The invariant (each proxy holds what generation from scratch gives) holds,
and a mutant fingerprint leaving out what the cluster or the listener hook reads breaks it.
(The random machines of test_engine_invariant.py rarely draw this case: with the kind diluted
among all kinds, a 2,000-example derandomized search did not find these mutants.)"""

from __future__ import annotations

from typing import Any

import pytest

from kuma.policies.locality_aware import LocalityShape
from kuma.policies.meshloadbalancingstrategy import MeshLoadBalancingStrategyPlugin
from kuma.resources import from_document
from kuma.resources.model import Dataplane, Policy
from kuma.xds.engine.assemble import NO_LOCALITIES, Assembly

from .test_engine_invariant import EngineMachineWithoutPolicies


def _dataplane(name: str, address: str, service: str, outbound: str | None) -> Dataplane:
    networking: dict[str, Any] = {
        "address": address,
        "inbound": [
            {"port": 8080, "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"}}
        ],
    }
    if outbound:
        networking["outbound"] = [{"port": 20000, "tags": {"kuma.io/service": outbound}}]
    resource = from_document(
        {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}
    )
    assert isinstance(resource, Dataplane)
    return resource


def _strategy(name: str, caller: str, load_balancer: dict[str, Any]) -> Policy:
    resource = from_document(
        {
            "type": "MeshLoadBalancingStrategy",
            "mesh": "default",
            "name": name,
            "spec": {
                "targetRef": {"kind": "MeshService", "name": caller},
                "to": [
                    {
                        "targetRef": {"kind": "MeshService", "name": "api"},
                        "default": {"loadBalancer": load_balancer},
                    }
                ],
            },
        }
    )
    assert isinstance(resource, Policy)
    return resource


def _run_scenario() -> None:
    machine = EngineMachineWithoutPolicies()
    machine._put(from_document({"type": "Mesh", "name": "default"}))  # type: ignore[arg-type]
    machine._put(_dataplane("web-1", "10.0.0.1", "web", "api"))
    machine._put(_dataplane("web-2", "10.0.0.2", "db", "api"))
    machine._put(_dataplane("api-1", "10.0.0.3", "api", None))
    ring = {
        "type": "RingHash",
        "ringHash": {"hashPolicies": [{"type": "Header", "header": {"name": "x"}}]},
    }
    machine._put(_strategy("p-a", "web", ring))
    machine._put(_strategy("p-b", "db", {"type": "Random"}))
    machine.apply_all()


def test_different_strategies_do_not_share_outbounds() -> None:
    _run_scenario()


@pytest.mark.parametrize("hook", ["outbound_cluster_input", "outbound_listener_input"])
def test_a_fingerprint_missing_the_strategy_is_caught(
    monkeypatch: pytest.MonkeyPatch, hook: str
) -> None:
    monkeypatch.setattr(MeshLoadBalancingStrategyPlugin, hook, lambda self, policies, rule: None)
    with pytest.raises(AssertionError, match=r"^default\.web-\d"):
        _run_scenario()


# --- localityAwareness: ClusterLoadAssignments keyed by the consumer's locality shape --------


def _zoned(name: str, address: str, service: str, zone: str, node: str, outbound: bool) -> Any:
    networking: dict[str, Any] = {
        "address": address,
        "inbound": [
            {
                "port": 8080,
                "tags": {"kuma.io/service": service, "kuma.io/zone": zone, "k8s/node": node},
            }
        ],
    }
    if outbound:
        networking["outbound"] = [{"port": 20000, "tags": {"kuma.io/service": "api"}}]
    return from_document(
        {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}
    )


def _locality(weight: int) -> Policy:
    resource = from_document(
        {
            "type": "MeshLoadBalancingStrategy",
            "mesh": "default",
            "name": "locality",
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [
                    {
                        "targetRef": {"kind": "MeshService", "name": "api"},
                        "default": {
                            "localityAwareness": {
                                "localZone": {
                                    "affinityTags": [{"key": "k8s/node", "weight": weight}]
                                },
                                "crossZone": {"failover": [{"to": {"type": "Any"}}]},
                            }
                        },
                    }
                ],
            },
        }
    )
    assert isinstance(resource, Policy)
    return resource


def _run_locality_scenario() -> None:
    """Two consumers of ``api`` in zone-1 on different nodes (different shapes), endpoints
    on both nodes and in zone-2; then an endpoint moves zone (CLAs patched) and the policy
    changes (consumers re-assembled). Each proxy must hold what generation from scratch
    gives at every step."""
    machine = EngineMachineWithoutPolicies()
    machine._put(from_document({"type": "Mesh", "name": "default"}))  # type: ignore[arg-type]
    machine._put(_zoned("web-1", "10.0.0.1", "web", "zone-1", "n1", True))
    machine._put(_zoned("web-2", "10.0.0.2", "web", "zone-1", "n2", True))
    machine._put(_zoned("api-1", "10.0.0.3", "api", "zone-1", "n1", False))
    machine._put(_zoned("db-1", "10.0.0.4", "api", "zone-2", "n2", False))
    machine._put(_locality(9000))
    machine.apply_all()
    machine._put(_zoned("db-1", "10.0.0.4", "api", "zone-1", "n2", False))
    machine.apply_all()
    machine._put(_locality(90))
    machine.apply_all()


def test_consumers_of_different_locality_shapes_get_their_own_endpoints() -> None:
    _run_locality_scenario()


def test_shapes_that_collide_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The mutant: one CLA for every shape (the cache key misses what the rewrite reads).
    monkeypatch.setattr(LocalityShape, "__eq__", lambda self, other: True)
    monkeypatch.setattr(LocalityShape, "__hash__", lambda self: 0)
    with pytest.raises(AssertionError, match=r"^default\.web-\d"):
        _run_locality_scenario()


def test_an_endpoint_patch_ignoring_the_shape_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The mutant: the engine forgets which shape a proxy's CLAs take, so an endpoint change
    # patches the shared CLA into it.
    original = Assembly.__init__

    def forgetful(self: Assembly, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**kwargs, "localities": NO_LOCALITIES})

    monkeypatch.setattr(Assembly, "__init__", forgetful)
    with pytest.raises(AssertionError, match=r"^default\.web-\d"):
        _run_locality_scenario()
