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
MTP: dict[str, Any] = {
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
TIMEOUT: dict[str, Any] = {
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


def fault(name: str, service: str, *, status: int = 418) -> dict[str, Any]:
    conf = {"http": [{"abort": {"httpStatus": status, "percentage": 100}}]}
    return {
        "type": "MeshFaultInjection",
        "mesh": "default",
        "name": name,
        "spec": {
            "targetRef": {"kind": "MeshService", "name": service},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": conf}],
        },
    }


def test_a_policy_re_assembles_the_egress_only_when_it_selects_an_external_service() -> None:
    """Kuma's policies at the egress (``kuma.policies.egress``): the egress is assembled again
    when such a policy selects (or selected) one of its ExternalServices, and only then."""
    engine = Engine()
    engine.apply_now(
        [put(mesh()), put(WEB), put(external("httpbin", "httpbin.org:80")), put(EGRESS)]
    )
    subscription = engine.subscribe(NODE)
    subscription.take_changes()
    engine.subscribe("default.web")  # the sidecar, assembled when a policy selects it

    def assembled(*events: ResourceEvent) -> int:
        engine.apply_now(list(events))
        return engine.last_batch.proxies_assembled

    # Policies of the kinds the egress applies, selecting no ExternalService: the sidecar
    # only (web is assembled, the egress is not).
    assert assembled(put(fault("on-web", "web"))) == 1
    assert (
        assembled(
            put(
                {
                    **MTP,
                    "name": "to-web",
                    "spec": {**MTP["spec"], "targetRef": {"kind": "MeshService", "name": "web"}},
                }
            )
        )
        == 1
    )
    assert not subscription.take_changes()

    # One selecting httpbin: the egress (web is not selected) gets the fault filter.
    assert assembled(put(fault("on-httpbin", "httpbin"))) == 1
    assert dict(subscription.take_changes()) == {types.LISTENER: {"inbound:10.0.0.9:10002"}}
    assert "envoy.filters.http.fault" in str(listener(subscription))
    matches_scratch(engine, subscription)
    # The same policy again: nothing.
    assert assembled(put(fault("on-httpbin", "httpbin"))) == 0
    # Changed (another status): the egress, which read it.
    assert assembled(put(fault("on-httpbin", "httpbin", status=503))) == 1
    matches_scratch(engine, subscription)
    # Moved to web: the egress (read it before) and web (selected now).
    assert assembled(put(fault("on-httpbin", "web"))) == 2
    assert "envoy.filters.http.fault" not in str(listener(subscription))
    matches_scratch(engine, subscription)
    # A rate limit for every service: web and the egress.
    limit = {
        "type": "MeshRateLimit",
        "mesh": "default",
        "name": "everyone",
        "spec": {
            "targetRef": {"kind": "Mesh", "proxyTypes": ["Sidecar"]},
            "from": [
                {
                    "targetRef": {"kind": "Mesh"},
                    "default": {"local": {"http": {"requestRate": {"num": 5, "interval": "1s"}}}},
                }
            ],
        },
    }
    assert assembled(put(limit)) == 2
    assert "envoy.filters.http.local_ratelimit" in str(listener(subscription))
    matches_scratch(engine, subscription)
    # Deleted: the egress drops it (its selection key).
    deleted = put(limit)
    assert assembled(ResourceEvent(Operation.DELETE, deleted.resource, _META, 2)) == 2
    assert "envoy.filters.http.local_ratelimit" not in str(listener(subscription))
    matches_scratch(engine, subscription)
    subscription.take_changes()
    # A kind Kuma does not apply at the egress, selecting every service: web only.
    timeout = {**TIMEOUT, "name": "t2", "spec": {**TIMEOUT["spec"], "targetRef": {"kind": "Mesh"}}}
    assert assembled(put(timeout)) == 1
    assert not subscription.take_changes()
