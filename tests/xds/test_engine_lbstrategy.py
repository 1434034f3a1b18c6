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

from kuma.policies.meshloadbalancingstrategy import MeshLoadBalancingStrategyPlugin
from kuma.resources import from_document
from kuma.resources.model import Dataplane, Policy

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
