"""MeshLoadBalancingStrategy ``crossZone`` on real cross-zone endpoints (other zones'
ZoneIngresses, kuma/xds/generate/cross_zone.py): a zone-1 consumer's ClusterLoadAssignment
puts each remote zone at the priority of the failover entry admitting it (instances kept as
weights), leaves out a zone no entry admits, follows a remote ingress's change by a patch and
a policy change by re-assembling only the selected proxy; always equal to generation from
scratch."""

from __future__ import annotations

from typing import Any

from kuma.policies import resolve
from kuma.resources import from_document
from kuma.store import Operation
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.engine.handlers import default_handlers
from kuma.xds.generate.cross_zone import remote_endpoints
from kuma.xds.generate.proxy import generate_proxy
from kuma.xds.generate.view import StaticMeshView

from .test_cross_zone import DB_ONLY, LOCAL, WEB, cla_of, groups, ingress, mesh, put, subscribed


def _strategy(failover: list[dict[str, Any]]) -> Any:
    return from_document(
        {
            "type": "MeshLoadBalancingStrategy",
            "mesh": "default",
            "name": "failover",
            "spec": {
                "targetRef": {"kind": "MeshService", "name": "web"},
                "to": [
                    {
                        "targetRef": {"kind": "MeshService", "name": "backend"},
                        "default": {"localityAwareness": {"crossZone": {"failover": failover}}},
                    }
                ],
            },
        }
    )


ZONE_3_FIRST: list[dict[str, Any]] = [
    {"to": {"type": "Only", "zones": ["zone-3"]}},
    {"to": {"type": "Any"}},
]


def _expected(policy: Any, ingresses: list[Any]) -> Any:
    view = StaticMeshView(
        [WEB, DB_ONLY, *LOCAL],
        mesh(),
        remote=remote_endpoints(ingresses, "zone-1"),
        local_zone="zone-1",
    )
    policies = resolve(WEB, {"MeshLoadBalancingStrategy": [policy]})
    return cla_of(generate_proxy(WEB, view, 9901, policies=policies)[types.ENDPOINT], "backend")


def test_failover_priorities_on_remote_ingress_endpoints() -> None:
    engine = Engine(handlers=default_handlers(zone="zone-1"))
    zone_2 = ingress("zi-2", "zone-2", {"backend": 3})
    zone_3 = ingress("zi-3", "zone-3", {"backend": 2}, address="192.0.2.4")
    policy = _strategy(ZONE_3_FIRST)
    engine.apply_now(put(mesh(), WEB, DB_ONLY, *LOCAL, zone_2, zone_3, policy))
    web, api = subscribed(engine, "default.web-1"), subscribed(engine, "default.api-1")
    backend = cla_of(web.resources(types.ENDPOINT), "backend")
    # Local endpoints weigh the 2 remote address:ports, ingresses their instances (crosszone);
    # zone-3 is admitted by the first entry (priority 1), zone-2 by the second (2).
    assert groups(backend) == [
        ("zone-1", 0, [("10.0.0.2", 10000, 2), ("10.0.0.3", 10000, 2)]),
        ("zone-2", 2, [("192.0.2.2", 10001, 3)]),
        ("zone-3", 1, [("192.0.2.4", 10001, 2)]),
    ]
    assert backend.policy.overprovisioning_factor.value == 200
    assert backend == _expected(policy, [zone_2, zone_3])

    # zone-2's instances change: web's CLA patched (no re-assembly), priorities kept.
    zone_2 = ingress("zi-2", "zone-2", {"backend": 5})
    stats = engine.apply_now(put(zone_2, operation=Operation.UPDATE))
    assert stats.proxies_assembled == 0
    assert web.take_changes() == {types.ENDPOINT: {"backend"}}
    backend = cla_of(web.resources(types.ENDPOINT), "backend")
    assert groups(backend)[1] == ("zone-2", 2, [("192.0.2.2", 10001, 5)])
    assert backend == _expected(policy, [zone_2, zone_3])

    # Only zone-3 may take failover traffic: zone-2 is left out; only web re-assembled.
    policy = _strategy(ZONE_3_FIRST[:1])
    stats = engine.apply_now(put(policy, operation=Operation.UPDATE))
    assert stats.proxies_assembled == 1
    assert web.take_changes() == {types.ENDPOINT: {"backend"}}
    assert api.take_changes() == {}
    backend = cla_of(web.resources(types.ENDPOINT), "backend")
    assert [(zone, priority) for zone, priority, _ in groups(backend)] == [
        ("zone-1", 0),
        ("zone-3", 1),
    ]
    assert backend == _expected(policy, [zone_2, zone_3])
