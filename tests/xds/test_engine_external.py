"""ExternalServices in the engine, on one fixed scenario: what a consumer's cluster holds, and
that a change re-assembles exactly the proxies with an outbound to the service (the engine's
``last_batch``), each step checked against generation from scratch by the invariant machine."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from kuma.resources import ExternalService, Secret, from_document
from kuma.resources.model import Dataplane
from kuma.store import Operation, ResourceEvent
from kuma.xds import types
from kuma.xds.engine.external_services import ExternalServices

from .test_engine_invariant import _META, EngineMachineWithExternalServices

CA = b"-----BEGIN CERTIFICATE-----\nTESTCA\n-----END CERTIFICATE-----\n"


def _dataplane(name: str, address: str, service: str, outbound: str) -> Dataplane:
    networking: dict[str, Any] = {
        "address": address,
        "inbound": [{"port": 8080, "tags": {"kuma.io/service": service}}],
        "outbound": [{"port": 20000, "tags": {"kuma.io/service": outbound}}],
    }
    resource = from_document(
        {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}
    )
    assert isinstance(resource, Dataplane)
    return resource


def _external(name: str, service: str, address: str, tls: dict[str, Any] | None) -> ExternalService:
    networking: dict[str, Any] = {"address": address}
    if tls is not None:
        networking["tls"] = tls
    resource = from_document(
        {
            "type": "ExternalService",
            "mesh": "default",
            "name": name,
            "networking": networking,
            "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"},
        }
    )
    assert isinstance(resource, ExternalService)
    return resource


def _cluster(machine: EngineMachineWithExternalServices, node: str) -> cluster_pb2.Cluster:
    held = machine.subscriptions[node].resources(types.CLUSTER)["httpbin"]
    return cluster_pb2.Cluster.FromString(held.body)


def test_consumers_and_only_they_follow_an_external_service(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _run_scenario(caplog)


def test_an_external_service_change_not_touching_its_consumers_is_caught(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A mutant engine whose ExternalService handler touches no service (its consumers keep
    the cluster they had): the invariant check of the scenario fails."""
    put = ExternalServices.put

    def untouched(self: ExternalServices, resource: ExternalService) -> set[str]:
        put(self, resource)
        return set()

    monkeypatch.setattr(ExternalServices, "put", untouched)
    with pytest.raises(AssertionError, match=r"^default\.web-\d"):
        _run_scenario(caplog)


def _run_scenario(caplog: pytest.LogCaptureFixture) -> None:
    machine = EngineMachineWithExternalServices()
    machine._put(from_document({"type": "Mesh", "name": "default"}))  # type: ignore[arg-type]
    machine._put(_dataplane("web-1", "10.0.0.1", "web", "httpbin"))
    machine._put(_dataplane("web-2", "10.0.0.2", "web", "httpbin"))
    machine._put(_dataplane("api-1", "10.0.0.3", "api", "web"))
    machine.apply_all()
    assert _cluster(machine, "default.web-1").type == cluster_pb2.Cluster.EDS

    tls = {"enabled": True, "caCert": {"secret": "httpbin-ca"}}
    machine._put(_external("httpbin", "httpbin", "httpbin.org:443", tls))
    machine.apply_all()
    # Its Secret is not there yet: left out (named, the value never), the cluster stays EDS.
    assert _cluster(machine, "default.web-1").type == cluster_pb2.Cluster.EDS
    logged = [str(getattr(r, "fields", "")) for r in caplog.records]
    assert any("Secret 'httpbin-ca'" in fields and "'httpbin'" in fields for fields in logged)

    machine._put(Secret(mesh="default", name="httpbin-ca", data=base64.b64encode(CA).decode()))
    machine.apply_all()
    assert machine.engine.last_batch.proxies_assembled == 2  # web-1 and web-2, not api-1
    cluster = _cluster(machine, "default.web-1")
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    assert cluster.dns_lookup_family == cluster_pb2.Cluster.V4_ONLY
    assert types.ENDPOINT not in machine.subscriptions["default.web-1"].take_changes()
    assert "httpbin" not in machine.subscriptions["default.web-1"].resources(types.ENDPOINT)
    socket_address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (socket_address.socket_address.address, socket_address.socket_address.port_value) == (
        "httpbin.org",
        443,
    )
    (match,) = cluster.transport_socket_matches
    context = tls_pb2.UpstreamTlsContext()
    match.transport_socket.typed_config.Unpack(context)
    assert context.sni == "httpbin.org"
    validation = context.common_tls_context.validation_context
    assert validation.trusted_ca.inline_bytes == CA
    assert [m.matcher.exact for m in validation.match_typed_subject_alt_names] == [
        "httpbin.org",
        "httpbin.org",
    ]
    assert not [r for r in caplog.records if "TESTCA" in f"{r.getMessage()}{r.__dict__}"]

    machine._put(_external("httpbin", "httpbin", "10.9.9.9:8080", None))
    machine.apply_all()
    assert machine.engine.last_batch.proxies_assembled == 2
    assert _cluster(machine, "default.web-1").type == cluster_pb2.Cluster.STATIC

    machine._put(_external("other", "db", "db.example:5432", None))  # nobody consumes db
    machine.apply_all()
    assert machine.engine.last_batch.proxies_assembled == 0

    gone = machine.stored.pop(("ExternalService", "default", "httpbin"))
    machine.pending.append(ResourceEvent(Operation.DELETE, gone, _META, 0))
    machine.apply_all()
    assert machine.engine.last_batch.proxies_assembled == 2
    assert _cluster(machine, "default.web-1").type == cluster_pb2.Cluster.EDS
    assert "httpbin" in machine.subscriptions["default.web-1"].resources(types.ENDPOINT)
