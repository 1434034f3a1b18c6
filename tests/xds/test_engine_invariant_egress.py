"""The engine's invariant (every connected sidecar holds what generation from scratch gives)
with zone egresses: meshes turning ``routing.zoneEgress`` on and off (with mTLS), this zone's
and another zone's ZoneEgresses coming, moving and going, beside ExternalServices, Secrets,
Dataplanes and policies (the rules of ``EngineMachineWithExternalServices``).

The egress itself (node ``.egress-1``) is connected too: after every batch, what the engine
announced to it equals what a fresh engine given the same resources at once builds for it
(Kuma's policies at the egress included: the drawn policies select ``db``, the external
service of every mesh, by all their targetRef kinds)."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from kuma.resources import Dataplane, ExternalService, Mesh, ZoneEgress, from_document, validate
from kuma.resources.model import Policy, ZoneEgressNetworking
from kuma.store import Operation, ResourceEvent
from kuma.xds.engine import Engine

from .test_engine_invariant import (
    _CONFS,
    _ES_NAMES,
    _META,
    ADMIN_PORT,
    MESHES,
    EngineMachine,
    EngineMachineWithExternalServices,
    _types,
)

_EGRESSES = ("egress-1", "egress-2")
EGRESS_NODE = ".egress-1"
_EGRESS_KINDS = (
    "MeshFaultInjection",
    "MeshRateLimit",
    "MeshTrafficPermission",
    "MeshLoadBalancingStrategy",
)
#: MeshLoadBalancingStrategy confs that shape an egress's endpoints or not (``to`` only).
_LOCALITY = (
    {"localityAwareness": {"crossZone": {"failover": [{"to": {"type": "Any"}}]}}},
    {"localityAwareness": {"localZone": {"affinityTags": [{"key": "version"}]}}},
    {"localityAwareness": {"disabled": True}},
)


class EngineMachineWithZoneEgress(EngineMachineWithExternalServices):
    def __init__(self) -> None:
        super().__init__()
        self.egress = self.engine.subscribe(EGRESS_NODE)
        self.egress.take_changes()
        #: What the egress was told: type -> name -> body.
        self.egress_held: dict[str, dict[str, bytes]] = {}

    def _check(self) -> None:
        super()._check()
        for type_url, names in self.egress.take_changes().items():
            bucket = self.egress_held.setdefault(type_url, {})
            desired = self.egress.resources(type_url)
            for name in names:
                resource = desired.get(name)
                if resource is None:
                    bucket.pop(name, None)
                else:
                    bucket[name] = resource.body
        fresh = Engine(default_admin_port=ADMIN_PORT, identity_ready=self.ready.__contains__)
        resources = sorted(self.applied.values(), key=lambda r: not isinstance(r, Mesh))
        fresh.apply_now(
            [ResourceEvent(Operation.CREATE, r, _META, i + 1) for i, r in enumerate(resources)]
        )
        reference = fresh.subscribe(EGRESS_NODE)
        want = {
            t: {n: r.body for n, r in reference.resources(t).items()} for t in _types(reference)
        }
        have = {t: dict(b) for t, b in self.egress_held.items() if b}
        assert have == {t: b for t, b in want.items() if b}, EGRESS_NODE
        assert self.egress.known == reference.known

    @initialize(mode=st.sampled_from(["STRICT", "PERMISSIVE"]))
    def start_routing_through_an_egress(self, mode: str) -> None:
        # Uniform rule choice would rarely line the pieces up: start with them in place.
        # A TCP and an HTTP external service (the policies at the egress shape either).
        services = (("db", "tcp", "db.example:5432"), ("api", "http", "api.example:80"))
        for name in MESHES:
            self.put_egress_mesh(name, mode, True)
            for es_name, (service, protocol, address) in zip(_ES_NAMES, services, strict=False):
                document = {
                    "type": "ExternalService",
                    "mesh": name,
                    "name": es_name,
                    "networking": {"address": address},
                    "tags": {"kuma.io/service": service, "kuma.io/protocol": protocol},
                }
                resource = from_document(document)
                assert isinstance(resource, ExternalService)
                self._put(resource)
        self.put_zone_egress("egress-1", "10.9.0.1", 10001, "")
        consumer = {
            "type": "Dataplane",
            "mesh": MESHES[0],
            "name": "web-1",
            "networking": {
                "address": "10.0.0.1",
                "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
                "outbound": [{"port": 20000, "tags": {"kuma.io/service": "db"}}],
            },
        }
        dataplane = from_document(consumer)
        assert isinstance(dataplane, Dataplane)
        self._put(dataplane)

    @rule(
        kind=st.sampled_from(_EGRESS_KINDS),
        mesh=st.sampled_from(MESHES),
        name=st.sampled_from(["egress-a", "egress-b"]),
        selects=st.sampled_from(["Mesh", "db", "api", "web"]),
        client=st.sampled_from(["Mesh", "web"]),
        choice=st.integers(0, 2),
        alone=st.booleans(),
    )
    def put_egress_policy(
        self, kind: str, mesh: str, name: str, selects: str, client: str, choice: int, alone: bool
    ) -> None:
        """A policy of a kind the egress applies, for an external service or not (the drawn
        policies of ``put_policy`` seldom line up with them); ``alone``: in a batch of its own
        (most batches hold an ExternalService, Mesh or ZoneEgress event, which re-assembles
        the egress anyway and would hide a policy change it missed)."""
        if alone:
            self._apply(len(self.pending))
        if selects == "Mesh":
            top: dict[str, Any] = {"kind": "Mesh", "proxyTypes": ["Sidecar"]}
        else:
            top = {"kind": "MeshService", "name": selects}
        confs = _CONFS[kind]
        if kind == "MeshRateLimit":
            client = "Mesh"  # Kuma: Mesh clients only
        source = {"kind": "Mesh"} if client == "Mesh" else {"kind": "MeshService", "name": client}
        spec = {
            "targetRef": top,
            "from": [{"targetRef": source, "default": confs[choice % len(confs)]}],
        }
        if kind == "MeshLoadBalancingStrategy":
            # ``to`` only: the service it selects there, under a top-level targetRef
            # (``client``: every client, or web's).
            to = {"kind": "Mesh"} if selects == "Mesh" else {"kind": "MeshService", "name": selects}
            top = {"kind": "Mesh"} if client == "Mesh" else {"kind": "MeshService", "name": client}
            spec = {"targetRef": top, "to": [{"targetRef": to, "default": _LOCALITY[choice]}]}
        policy = from_document({"type": kind, "mesh": mesh, "name": name, "spec": spec})
        assert isinstance(policy, Policy)
        assert not validate(policy), validate(policy)
        self._put(policy)
        if alone:
            self._apply(1)

    @rule(
        kind=st.sampled_from(_EGRESS_KINDS),
        mesh=st.sampled_from(MESHES),
        name=st.sampled_from(["egress-a", "egress-b"]),
    )
    def delete_egress_policy(self, kind: str, mesh: str, name: str) -> None:
        self._delete((kind, mesh, name))

    @rule(
        name=st.sampled_from(MESHES),
        mode=st.sampled_from(["STRICT", "PERMISSIVE"]),
        zone_egress=st.booleans(),
    )
    def put_egress_mesh(self, name: str, mode: str, zone_egress: bool) -> None:
        backend = {"name": "ca-1", "type": "builtin", "mode": mode}
        mtls = {"enabledBackend": "ca-1", "backends": [backend]}
        self._put(Mesh(name=name, mtls=mtls, routing={"zoneEgress": zone_egress}))

    @rule(
        name=st.sampled_from(_EGRESSES),
        address=st.sampled_from(["10.9.0.1", "10.9.0.2"]),
        port=st.sampled_from([10001, 10002]),
        zone=st.sampled_from(["", "zone-2"]),
    )
    def put_zone_egress(self, name: str, address: str, port: int, zone: str) -> None:
        networking = ZoneEgressNetworking(address, port)
        self._put(ZoneEgress(name=name, zone=zone, networking=networking))

    @rule(name=st.sampled_from(_EGRESSES))
    def delete_zone_egress(self, name: str) -> None:
        self._delete((ZoneEgress.TYPE, "", name))


EngineMachineWithZoneEgress.TestCase.settings = settings(
    EngineMachine.TestCase.settings,
    max_examples=max(1, int(os.environ.get("KUMA_INVARIANT_EXAMPLES", "300")) // 3),
)
TestEngineInvariantWithZoneEgress = EngineMachineWithZoneEgress.TestCase


def test_a_locality_policy_shapes_the_egress_endpoints_as_generation_from_scratch() -> None:
    """Found by the machine: a consumer's MeshLoadBalancingStrategy locality shaped its
    ClusterLoadAssignment of an external service through the egress in the engine (as Kuma
    does with egress on) but not in ``generate_proxy``."""
    machine = EngineMachineWithZoneEgress()
    machine.start_routing_through_an_egress("STRICT")
    locality = {
        "localZone": {"affinityTags": [{"key": "version"}]},
        "crossZone": {"failover": [{"to": {"type": "Any"}}]},
    }
    policy = from_document(
        {
            "type": "MeshLoadBalancingStrategy",
            "mesh": MESHES[0],
            "name": "p-a",
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [
                    {
                        "targetRef": {"kind": "MeshService", "name": "db"},
                        "default": {"localityAwareness": locality},
                    }
                ],
            },
        }
    )
    assert isinstance(policy, Policy)
    machine._put(policy)
    machine.teardown()  # applies the batch and checks every connected proxy
