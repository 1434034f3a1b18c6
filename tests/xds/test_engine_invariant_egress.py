"""The engine's invariant (every connected sidecar holds what generation from scratch gives)
with zone egresses: meshes turning ``routing.zoneEgress`` on and off (with mTLS), this zone's
and another zone's ZoneEgresses coming, moving and going, beside ExternalServices, Secrets,
Dataplanes and policies (the rules of ``EngineMachineWithExternalServices``)."""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from kuma.resources import Dataplane, ExternalService, Mesh, ZoneEgress, from_document
from kuma.resources.model import ZoneEgressNetworking

from .test_engine_invariant import (
    _ES_NAMES,
    MESHES,
    EngineMachine,
    EngineMachineWithExternalServices,
)

_EGRESSES = ("egress-1", "egress-2")


class EngineMachineWithZoneEgress(EngineMachineWithExternalServices):
    @initialize(mode=st.sampled_from(["STRICT", "PERMISSIVE"]))
    def start_routing_through_an_egress(self, mode: str) -> None:
        # Uniform rule choice would rarely line the pieces up: start with them in place.
        for name in MESHES:
            self.put_egress_mesh(name, mode, True)
            document = {
                "type": "ExternalService",
                "mesh": name,
                "name": _ES_NAMES[0],
                "networking": {"address": "db.example:5432"},
                "tags": {"kuma.io/service": "db", "kuma.io/protocol": "tcp"},
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
