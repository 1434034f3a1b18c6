"""Sidecars reaching an ExternalService through the zone egress (Mesh ``routing.zoneEgress``
in an mTLS mesh), in the engine, on one fixed scenario; every step is checked against
generation from scratch by the invariant machine (``apply_all``)."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from kuma.resources import ZoneEgress, from_document
from kuma.resources.model import ZoneEgressNetworking
from kuma.store import Operation, ResourceEvent
from kuma.xds import types

from .test_engine_external import _dataplane, _external
from .test_engine_invariant import _META, EngineMachineWithExternalServices

_MTLS = {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}


def _mesh(zone_egress: bool) -> Any:
    return from_document(
        {"type": "Mesh", "name": "default", "mtls": _MTLS, "routing": {"zoneEgress": zone_egress}}
    )


def _egress(name: str, address: str, port: int, zone: str = "") -> ZoneEgress:
    return ZoneEgress(name=name, zone=zone, networking=ZoneEgressNetworking(address, port))


def _held(machine: EngineMachineWithExternalServices, node: str, kind: str) -> Any:
    return machine.subscriptions[node].resources(kind).get("httpbin")


def _cluster(machine: EngineMachineWithExternalServices) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster.FromString(_held(machine, "default.web-1", types.CLUSTER).body)


def _endpoints(machine: EngineMachineWithExternalServices) -> list[tuple[str, int]]:
    held = _held(machine, "default.web-1", types.ENDPOINT)
    cla = endpoint_pb2.ClusterLoadAssignment.FromString(held.body)
    return [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for group in cla.endpoints
        for e in group.lb_endpoints
    ]


def test_consumers_go_through_the_zone_egress_and_follow_it() -> None:
    machine = EngineMachineWithExternalServices()
    machine._put(_mesh(zone_egress=False))
    machine._put(_dataplane("web-1", "10.0.0.1", "web", "httpbin"))
    machine._put(_dataplane("web-2", "10.0.0.2", "web", "httpbin"))
    machine._put(_dataplane("api-1", "10.0.0.3", "api", "web"))
    machine._put(_external("httpbin", "httpbin", "httpbin.org:443", {"enabled": True}))
    machine._put(_egress("egress-1", "10.0.9.1", 10002))
    machine.apply_all()
    # routing.zoneEgress off: straight to the external address (the direct way).
    assert _cluster(machine).type == cluster_pb2.Cluster.STRICT_DNS

    machine._put(_mesh(zone_egress=True))
    machine.apply_all()
    cluster = _cluster(machine)
    assert cluster.type == cluster_pb2.Cluster.EDS
    assert not cluster.transport_socket_matches  # the ExternalService's TLS is the egress's
    context = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(context)
    assert context.sni == "httpbin{mesh=default}"
    validation = context.common_tls_context.combined_validation_context
    sans = validation.default_validation_context.match_typed_subject_alt_names
    assert [m.matcher.exact for m in sans] == ["spiffe://default/zone-egress"]
    assert _endpoints(machine) == [("10.0.9.1", 10002)]

    # A second egress, one of another zone (ignored), then the first one moves: only the
    # two consumers are re-assembled each time.
    machine._put(_egress("egress-2", "10.0.9.2", 10002))
    machine._put(_egress("far", "10.1.9.9", 10002, zone="zone-2"))
    machine.apply_all()
    assert machine.engine.last_batch.proxies_assembled == 2
    assert _endpoints(machine) == [("10.0.9.1", 10002), ("10.0.9.2", 10002)]
    machine._put(_egress("egress-1", "10.0.9.3", 10003))
    machine.apply_all()
    assert machine.engine.last_batch.proxies_assembled == 2
    assert _endpoints(machine) == [("10.0.9.2", 10002), ("10.0.9.3", 10003)]

    gone = machine.stored.pop(("ZoneEgress", "", "egress-2"))
    machine.pending.append(ResourceEvent(Operation.DELETE, gone, _META, 0))
    gone = machine.stored.pop(("ZoneEgress", "", "egress-1"))
    machine.pending.append(ResourceEvent(Operation.DELETE, gone, _META, 0))
    machine.apply_all()
    assert _endpoints(machine) == []  # no egress: unreachable, as in Kuma

    machine._put(_mesh(zone_egress=False))
    machine.apply_all()
    assert _cluster(machine).type == cluster_pb2.Cluster.STRICT_DNS
