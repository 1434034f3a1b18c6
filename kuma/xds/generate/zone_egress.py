"""A ZoneEgress's own Envoy config for external services, after Kuma v2.7
(pkg/xds/generator/egress/{generator,external_services_generator}.go, the
meshtrafficpermission plugin's ``configureEgress``; shapes as its testdata goldens).

* One listener ``inbound:<address>:<port>`` on the egress's ``networking`` with the
  ``tls_inspector``.
* Per (mesh, external service) a filter chain ``<service>_<mesh>`` matched by the SNI sidecars
  send (``<service>{mesh=<mesh>}``, Kuma's ``SNIFromTags``: ``via_egress.py``) and transport
  ``tls``; it terminates the mesh's mTLS as a sidecar's inbound does (the egress's identity
  and the mesh CA over SDS: ``identity_cert:secret:<mesh>``, ``mesh_ca:secret:<mesh>``),
  authorizes with MeshTrafficPermission (RBAC first in the chain; Kuma: no permission
  selecting the external service denies everyone), with the changes of the other kinds Kuma
  applies on the chain (MeshFaultInjection, MeshRateLimit: ``kuma.policies.egress``), then an
  HTTP connection manager (``kuma.io/protocol`` http/http2/grpc: host rewritten to the
  external host) or a TCP proxy to the cluster ``<mesh>:<service>``.
* That cluster is the one a sidecar builds when it reaches the ExternalService directly
  (``external.external_cluster``: STRICT_DNS or STATIC, the ExternalService's own TLS
  originated per endpoint), under the egress's name, its endpoints' localities as
  MeshLoadBalancingStrategy makes them at the egress (``kuma.policies.egress``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2

from kuma.policies import EMPTY, ProxyPolicies
from kuma.policies.egress import EGRESS_INBOUND, apply_egress_chain, apply_egress_cluster
from kuma.policies.meshtrafficpermission import permission_rules
from kuma.resources.model import SERVICE_TAG, ZoneEgress

from ._pb import add_hcm, add_tcp_proxy
from .destination import Destination
from .external import ExternalEndpoint, external_cluster
from .listeners import _hcm, _set_route_config
from .names import inbound_listener_name, outbound_route_name, sanitize_metric
from .protocol import GRPC, HTTP, HTTP2
from .rbac import DENY_ALL, PermissionRule, apply_rbac
from .tls import _TLS_INSPECTOR, downstream_transport_socket, sni_from_tags

MTP = "MeshTrafficPermission"


class EgressService(NamedTuple):
    """One external service of one mesh as an egress carries it."""

    mesh: str
    service: str
    protocol: str
    #: Its ExternalServices, resolved (``external.resolve_endpoints``).
    endpoints: tuple[ExternalEndpoint, ...]
    #: MeshTrafficPermission rules for callers (None: none selects it, everyone is denied).
    permissions: tuple[PermissionRule, ...] | None = None
    #: The policies selecting it at the egress (``kuma.policies.egress.egress_policies``).
    policies: ProxyPolicies = EMPTY


def egress_cluster_name(mesh: str, service: str) -> str:
    return f"{mesh}:{service}"


def egress_chain_name(mesh: str, service: str) -> str:
    """Kuma's ``GetEgressFilterChainName``."""
    return f"{service}_{mesh}"


def egress_permissions(policies: ProxyPolicies) -> tuple[PermissionRule, ...] | None:
    """The MeshTrafficPermission rules among an external service's egress policies
    (``kuma.policies.egress``); None when no permission selects it."""
    matched = policies.get(MTP)
    if matched is None:
        return None
    rules = permission_rules(matched, EGRESS_INBOUND)
    return None if rules is None else tuple(rules)


def _cluster(item: EgressService, zone: str) -> cluster_pb2.Cluster:
    name = egress_cluster_name(item.mesh, item.service)
    cluster = external_cluster(Destination(item.service), item.protocol, item.endpoints)
    cluster.name = name
    cluster.alt_stat_name = sanitize_metric(name)
    cluster.load_assignment.cluster_name = name
    apply_egress_cluster(cluster, item.policies, zone)
    return cluster


def _add_chain(listener: listener_pb2.Listener, item: EgressService) -> None:
    # Kuma's plugin order puts MeshTrafficPermission after the kinds that change the chain:
    # its RBAC filter goes in front of theirs.
    chain = listener.filter_chains.add(name=egress_chain_name(item.mesh, item.service))
    match = chain.filter_chain_match
    match.server_names.append(sni_from_tags({SERVICE_TAG: item.service, "mesh": item.mesh}))
    match.transport_protocol = "tls"
    chain.transport_socket.CopyFrom(downstream_transport_socket(item.mesh))
    cluster = egress_cluster_name(item.mesh, item.service)
    if item.protocol in (HTTP, HTTP2, GRPC):
        config = _hcm(item.service, item.protocol)
        route_config = config.route_config
        _set_route_config(route_config, outbound_route_name(item.service), item.service, cluster)
        # The external server expects its own name, not the one the caller used.
        route_config.virtual_hosts[0].routes[0].route.auto_host_rewrite.value = True
        add_hcm(chain, config)
    else:
        add_tcp_proxy(chain, item.service, cluster, None)
    apply_egress_chain(chain, item.policies, item.protocol)
    rules = DENY_ALL if item.permissions is None else item.permissions
    # Kuma's StatsName here is the egress listener's name (the network filter's stat prefix).
    apply_rbac(chain, listener.name, item.mesh, rules)


def generate_zone_egress(
    egress: ZoneEgress,
    services: Sequence[EgressService],
    passthrough: Sequence[listener_components_pb2.FilterChain] = (),
) -> tuple[listener_pb2.Listener | None, list[cluster_pb2.Cluster]]:
    """The egress's listener (None when it carries nothing: Envoy refuses a listener without
    filter chains) and one cluster per external service, in (mesh, service) order.
    ``passthrough``: the chains to other zones' services (``egress_internal.py``), first as
    Kuma's internal services generator runs first."""
    networking = egress.networking
    assert networking is not None  # validated
    ordered = sorted(services, key=lambda s: (s.mesh, s.service))
    if not ordered and not passthrough:
        return None, []
    name = inbound_listener_name(networking.address, networking.port)
    listener = listener_pb2.Listener(name=name, traffic_direction=1)  # INBOUND
    listener.address.socket_address.address = networking.address
    listener.address.socket_address.port_value = networking.port
    listener.enable_reuse_port.value = False
    listener.listener_filters.append(_TLS_INSPECTOR)
    listener.filter_chains.extend(passthrough)
    for item in ordered:
        _add_chain(listener, item)
    # The egress's zone (a zone control plane stamps its own on the ZoneEgress; Kuma's
    # ``proxy.Zone``): MeshLoadBalancingStrategy's localities are relative to it.
    return listener, [_cluster(item, egress.zone) for item in ordered]


def referenced_meshes(services: Iterable[EgressService]) -> list[str]:
    """The meshes whose identity and CA Secrets the egress's chains reference (over SDS)."""
    return sorted({s.mesh for s in services})
