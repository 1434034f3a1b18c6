"""The zone egress's Envoy config against Kuma v2.7's generator
(pkg/xds/generator/egress/testdata/01.externalservice-only.golden.yaml: names, SNI match,
mTLS termination over SDS, the cluster to the external address) and its permissions (Kuma's
MeshTrafficPermission plugin ``configureEgress``: none selecting the service denies all)."""

from __future__ import annotations

from typing import Any

from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from kuma.policies.egress import egress_policies, service_tags
from kuma.resources import from_document
from kuma.resources.model import ExternalService, Policy, ZoneEgress
from kuma.xds.generate.external import resolve_endpoints
from kuma.xds.generate.rbac import PermissionRule
from kuma.xds.generate.zone_egress import EgressService, egress_permissions, generate_zone_egress

MTP = "MeshTrafficPermission"


def _service(service: str, address: str, protocol: str) -> EgressService:
    resource = from_document(
        {
            "type": "ExternalService",
            "mesh": "mesh-1",
            "name": service,
            "networking": {"address": address},
            "tags": {"kuma.io/service": service, "kuma.io/protocol": protocol},
        }
    )
    assert isinstance(resource, ExternalService)
    endpoints = resolve_endpoints({service: resource}, {}, "mesh-1")
    return EgressService("mesh-1", service, protocol, endpoints)


def _mtp(target: dict[str, Any], action: str) -> Policy:
    policy = from_document(
        {
            "type": "MeshTrafficPermission",
            "mesh": "mesh-1",
            "name": f"mtp-{action}",
            "spec": {
                "targetRef": target,
                "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": action}}],
            },
        }
    )
    assert isinstance(policy, Policy)
    return policy


def _egress() -> ZoneEgress:
    egress = from_document(
        {
            "type": "ZoneEgress",
            "name": "egress",
            "networking": {"address": "192.168.0.1", "port": 10002},
        }
    )
    assert isinstance(egress, ZoneEgress)
    return egress


def test_kuma_golden_shape_for_an_external_service() -> None:
    services = [
        _service("externalservice-1", "kuma.io:80", "http"),
        _service("db", "10.1.1.1:5432", "tcp"),
    ]
    listener, clusters = generate_zone_egress(_egress(), services)
    assert listener is not None
    assert listener.name == "inbound:192.168.0.1:10002"
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    db, http = listener.filter_chains
    assert http.name == "externalservice-1_mesh-1"
    assert list(http.filter_chain_match.server_names) == ["externalservice-1{mesh=mesh-1}"]
    assert http.filter_chain_match.transport_protocol == "tls"
    context = tls_pb2.DownstreamTlsContext()
    http.transport_socket.typed_config.Unpack(context)
    assert context.require_client_certificate.value
    common = context.common_tls_context
    assert [c.name for c in common.tls_certificate_sds_secret_configs] == [
        "identity_cert:secret:mesh-1"
    ]
    validation = common.combined_validation_context
    assert validation.validation_context_sds_secret_config.name == "mesh_ca:secret:mesh-1"
    sans = validation.default_validation_context.match_typed_subject_alt_names
    assert [m.matcher.prefix for m in sans] == ["spiffe://mesh-1/"]
    config = hcm_pb2.HttpConnectionManager()
    (hcm,) = http.filters
    hcm.typed_config.Unpack(config)
    route = config.route_config.virtual_hosts[0].routes[0].route
    assert (route.cluster, route.auto_host_rewrite.value) == ("mesh-1:externalservice-1", True)
    # No permission selects it: denied (an RBAC with no policy).
    rbac = http_rbac_pb2.RBAC()
    config.http_filters[0].typed_config.Unpack(rbac)
    assert config.http_filters[0].name == "envoy.filters.http.rbac"
    assert rbac.rules.action == rbac_pb2.RBAC.ALLOW
    assert not rbac.rules.policies
    # A TCP service: network RBAC first, then the TCP proxy.
    assert [f.name for f in db.filters] == [
        "envoy.filters.network.rbac",
        "envoy.filters.network.tcp_proxy",
    ]
    network = network_rbac_pb2.RBAC()
    db.filters[0].typed_config.Unpack(network)
    assert not network.rules.policies

    cluster_db, cluster_http = clusters
    assert (cluster_http.name, cluster_http.alt_stat_name) == (
        "mesh-1:externalservice-1",
        "mesh-1_externalservice-1",
    )
    assert cluster_http.type == cluster_http.STRICT_DNS
    address = cluster_http.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (address.socket_address.address, address.socket_address.port_value) == ("kuma.io", 80)
    assert cluster_db.type == cluster_db.STATIC


def test_nothing_to_carry_no_listener() -> None:
    assert generate_zone_egress(_egress(), []) == (None, [])


def test_permissions_select_by_the_external_services_name() -> None:
    def permissions(*policies: Policy) -> tuple[PermissionRule, ...] | None:
        return egress_permissions(
            egress_policies(service_tags("externalservice-1"), {MTP: policies})
        )

    assert permissions() is None
    other = _mtp({"kind": "MeshService", "name": "other"}, "Allow")
    assert permissions(other) is None
    mine = _mtp({"kind": "MeshService", "name": "externalservice-1"}, "Allow")
    (rule,) = permissions(other, mine) or ()
    assert (rule.subset, rule.action) == ((), "Allow")
    mesh_wide = _mtp({"kind": "Mesh"}, "Deny")
    assert [r.action for r in permissions(mesh_wide) or ()] == ["Deny"]
    # Kuma matches the external service at the egress by ``kuma.io/service`` alone (its
    # egress proxy builder's second match): a subset on its other tags selects nothing.
    by_protocol = _mtp({"kind": "MeshSubset", "tags": {"kuma.io/protocol": "http"}}, "Allow")
    assert permissions(by_protocol) is None
