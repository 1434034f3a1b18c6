"""The ZoneEgress proxy in the engine: what a connected egress (node ``.<name>``) holds, equal
to the generator's output from scratch, and that it is re-assembled only when what it reads
changes (ExternalServices, the mesh's mTLS/routing, MeshTrafficPermission, its ZoneEgress),
never for a sidecar's Dataplane or another policy kind."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from envoy.config.listener.v3 import listener_pb2

from kuma.resources import ResourceMeta, from_document
from kuma.resources.model import Resource, ZoneEgress
from kuma.store import Operation, ResourceEvent
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.engine.watches import Subscription
from kuma.xds.engine.zone_egress import egress_services
from kuma.xds.generate.zone_egress import generate_zone_egress

_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
NODE = ".egress-1"


def put(document: dict[str, Any]) -> ResourceEvent:
    resource = from_document(document)
    assert isinstance(resource, Resource)
    return ResourceEvent(Operation.CREATE, resource, _META, 1)


def mesh(*, zone_egress: bool = True, mtls: bool = True) -> dict[str, Any]:
    document: dict[str, Any] = {"type": "Mesh", "name": "default"}
    if mtls:
        backend = {"name": "ca-1", "type": "builtin"}
        document["mtls"] = {"enabledBackend": "ca-1", "backends": [backend]}
    document["routing"] = {"zoneEgress": zone_egress}
    return document


def external(name: str, address: str) -> dict[str, Any]:
    return {
        "type": "ExternalService",
        "mesh": "default",
        "name": name,
        "networking": {"address": address},
        "tags": {"kuma.io/service": name, "kuma.io/protocol": "http"},
    }


EGRESS = {
    "type": "ZoneEgress",
    "name": "egress-1",
    "networking": {"address": "10.0.0.9", "port": 10002},
}
WEB: dict[str, Any] = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "web",
    "networking": {
        "address": "10.0.0.1",
        "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
        "outbound": [{"port": 20000, "tags": {"kuma.io/service": "httpbin"}}],
    },
}
MTP = {
    "type": "MeshTrafficPermission",
    "mesh": "default",
    "name": "web-to-httpbin",
    "spec": {
        "targetRef": {"kind": "MeshService", "name": "httpbin"},
        "from": [
            {"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Allow"}}
        ],
    },
}
TIMEOUT = {
    "type": "MeshTimeout",
    "mesh": "default",
    "name": "t",
    "spec": {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "5s"}}],
    },
}


def listener(subscription: Subscription) -> listener_pb2.Listener | None:
    held = subscription.resources(types.LISTENER)
    if not held:
        return None
    (resource,) = held.values()
    return listener_pb2.Listener.FromString(resource.body)


def matches_scratch(engine: Engine, subscription: Subscription) -> None:
    egress = from_document(EGRESS)
    assert isinstance(egress, ZoneEgress)
    services, _ = egress_services(engine.inputs.meshes)
    want_listener, want_clusters = generate_zone_egress(egress, services)
    assert listener(subscription) == want_listener
    held = subscription.resources(types.CLUSTER)
    assert {n: r.body for n, r in held.items()} == {
        c.name: c.SerializeToString(deterministic=True) for c in want_clusters
    }


def test_the_egress_follows_what_it_reads_and_only_that() -> None:
    engine = Engine()
    engine.apply_now(
        [put(mesh()), put(WEB), put(external("httpbin", "httpbin.org:80")), put(EGRESS)]
    )
    subscription = engine.subscribe(NODE)
    subscription.take_changes()
    first = listener(subscription)
    assert first is not None
    assert [c.name for c in first.filter_chains] == ["httpbin_default"]
    matches_scratch(engine, subscription)

    # A sidecar's change, another policy kind: the egress is not re-assembled.
    moved = {**WEB, "networking": {**WEB["networking"], "address": "10.0.0.2"}}
    engine.apply_now([put(moved)])
    engine.apply_now([put(TIMEOUT)])
    assert not subscription.take_changes()

    # A permission for its service: its RBAC changes.
    engine.apply_now([put(MTP)])
    assert dict(subscription.take_changes()) == {types.LISTENER: {"inbound:10.0.0.9:10002"}}
    matches_scratch(engine, subscription)

    # A new ExternalService: a chain and a cluster more.
    engine.apply_now([put(external("db", "10.1.1.1:5432"))])
    changes = subscription.take_changes()
    assert changes[types.CLUSTER] == {"default:db"}
    assert [c.name for c in listener(subscription).filter_chains] == [  # type: ignore[union-attr]
        "db_default",
        "httpbin_default",
    ]
    matches_scratch(engine, subscription)

    # routing.zoneEgress off: nothing to carry (no listener: Envoy refuses an empty one).
    engine.apply_now([put(mesh(zone_egress=False))])
    assert listener(subscription) is None
    assert not subscription.resources(types.CLUSTER)
    engine.apply_now([put(mesh())])
    matches_scratch(engine, subscription)

    # Its ZoneEgress moves: a new listener.
    engine.apply_now([put({**EGRESS, "networking": {"address": "10.0.0.9", "port": 10003}})])
    assert "inbound:10.0.0.9:10003" in subscription.resources(types.LISTENER)
