"""Whole-proxy generation from scratch: a Dataplane plus a read-only view of its mesh.

What a standard proxy gets (Kuma v2.7's default proxy profile, without mTLS and policies):

* an inbound listener and a ``localhost:<servicePort>`` cluster per inbound (none for a
  gateway, none for Kuma's "serviceless" port 49151), healthy or not;
* per outbound: a listener, and per distinct destination (a service, or the subset of it an
  outbound's extra tags select: ``destination.py``) its EDS cluster and ClusterLoadAssignment;
* with transparent proxying (both redirect ports set): an outbound on port ``vip_port``
  (Kuma's ``dnsServer.serviceVipPort``, 80) of each mesh service that has a virtual IP, only
  those in ``reachableServices`` when that list is not empty, the proxy's own services
  included (as in Kuma), skipping one that would overlap an inbound; explicit outbounds whose
  address is a VIP are dropped; plus the redirect listeners and passthrough clusters;
  ExternalServices' VIP outbounds (their port and ``vip_port``, on the service's VIP and on
  their host's: ``external_vips.py``) under the same ``reachableServices`` rule;
* the admin cluster and listener;
* with ``probes``: the virtual probe listener ``probe:listener`` (``probes.py``);
* with mesh mTLS on (``mtls.enabledBackend``): inbound listeners secured per the backend's
  mode with RBAC from the proxy's permissions (deny-all when none applies), outbound service
  clusters originating mTLS (PERMISSIVE: once the service is TLS-ready), and the SDS Secrets
  ``identity_cert:secret:<mesh>`` / ``mesh_ca:secret:<mesh>`` they reference (served by the
  certificate source, not built here: see ``referenced_secrets``).

* with transparent proxying and a DNS port (kuma-dp's, from the node metadata): the
  ``kuma:dns`` listener answering the names of the VIPs it has outbounds for (``dns.py``).

* with prometheus metrics on the mesh: ``kuma:metrics:prometheus`` (``prometheus.py``).

Kuma's tracing and direct-access generators are not reproduced. Where the outbounds are and
what the proxy's policies make of their listeners and clusters: ``outbounds.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from envoy.config.endpoint.v3 import endpoint_pb2

from kuma.policies import (
    EMPTY,
    ProxyPolicies,
    apply_passthrough,
    own_clusters,
)
from kuma.policies.caller_tags import caller_tags_header
from kuma.policies.locality_aware import locality_shape, shape_load_assignment
from kuma.resources.model import Dataplane, Mesh
from kuma.resources.mtls import PERMISSIVE, enabled_backend

from . import types
from ._pb import Message
from .admin import admin_port, admin_resources
from .clusters import (
    inbound_passthrough_cluster,
    outbound_passthrough_cluster,
)
from .cross_zone import LocalityPlan
from .dataplane import ipv6_inbound_redirect_port, is_transparent
from .destination import Destination, destination_load_assignment
from .dns import proxy_dns_listener
from .endpoints import Endpoint
from .external import ExternalEndpoint, external_cluster, is_ipv6_proxy
from .external_vips import ExternalVip
from .inbounds import InboundPart as InboundPart
from .inbounds import PermissionLookup as PermissionLookup
from .inbounds import inbound_mtls as inbound_mtls
from .inbounds import inbound_parts as inbound_parts
from .inbounds import inbound_resources as inbound_resources
from .listeners import (
    inbound_redirect_listener,
    outbound_redirect_listener,
)
from .outbounds import DEFAULT_VIP_PORT as DEFAULT_VIP_PORT
from .outbounds import OutboundPart as OutboundPart
from .outbounds import outbound_plan as outbound_plan
from .outbounds import outbounds_of as outbounds_of
from .outbounds import policy_outbound_listener as policy_outbound_listener
from .outbounds import policy_service_cluster as policy_service_cluster
from .probes import probe_listener
from .prometheus import NO_SIDECAR_METRICS, SidecarMetrics, prometheus_resources
from .tls import identity_secret_name, mesh_ca_secret_name
from .via_egress import EgressAddress, egress_cluster, egress_endpoints, routes_through_egress

Resources = dict[str, dict[str, Message]]

_TYPE_URLS = {
    "envoy.config.cluster.v3.Cluster": types.CLUSTER,
    "envoy.config.endpoint.v3.ClusterLoadAssignment": types.ENDPOINT,
    "envoy.config.listener.v3.Listener": types.LISTENER,
    "envoy.config.route.v3.RouteConfiguration": types.ROUTE,
    "envoy.extensions.transport_sockets.tls.v3.Secret": types.SECRET,
}


class MeshView(Protocol):
    """What generation reads about the proxy's mesh."""

    @property
    def mesh(self) -> Mesh | None: ...

    def endpoints(self, service: str) -> Sequence[Endpoint]:
        """The healthy endpoints of ``service`` (any order), remote ingresses' included when
        :meth:`locality` says so."""
        ...

    def locality(self) -> LocalityPlan:
        """How the mesh's ClusterLoadAssignments weigh and prioritize zones (cross_zone.py)."""
        ...

    def protocol(self, service: str) -> str:
        """The common protocol of the service's healthy endpoints (``service_protocol``)."""
        ...

    def services(self) -> Iterable[str]:
        """Every service of the mesh (inbounds not in state Ignored), for transparent proxies."""
        ...

    def vip(self, service: str) -> str | None:
        """The virtual IP of ``service``, if one is allocated."""
        ...

    def external(self, service: str) -> Sequence[ExternalEndpoint]:
        """The ExternalServices tagged ``service``, resolved (empty: not external)."""
        ...

    def external_vips(self) -> Sequence[ExternalVip]:
        """The addresses transparent proxies reach ExternalServices at (``external_vips.py``)."""
        ...

    def zone_egresses(self) -> Sequence[EgressAddress]:
        """This zone's ZoneEgresses (the way to external services with ``zoneEgress``)."""
        ...


#: Whether a service of the mesh is ready for mTLS (PERMISSIVE mode only).
TlsReadiness = Callable[[str], bool]


def upstream_tls_mesh(
    mesh: Mesh | None, service: str, tls_ready: TlsReadiness | None = None
) -> str | None:
    """The mesh whose mTLS the cluster of ``service`` originates, or None for plaintext.
    PERMISSIVE: only once the service is ready for it (Kuma's TLS readiness), so clients
    never speak TLS to a proxy that does not yet accept it."""
    backend = enabled_backend(mesh)
    if backend is None or mesh is None:
        return None
    if backend.mode == PERMISSIVE and not (tls_ready is not None and tls_ready(service)):
        return None
    return mesh.name


def referenced_secrets(mesh: Mesh | None, parts: ProxyParts) -> tuple[str, ...]:
    """The SDS Secrets a proxy's listeners and clusters reference: its identity and its
    mesh's CA when mTLS is on and the proxy has an inbound or an outbound, else none."""
    if mesh is None or enabled_backend(mesh) is None or not (parts.inbounds or parts.outbounds):
        return ()
    return (identity_secret_name(mesh.name), mesh_ca_secret_name(mesh.name))


def type_url_of(message: Message) -> str:
    return _TYPE_URLS[message.DESCRIPTOR.full_name]


def _put(resources: Resources, message: Any) -> None:
    resources[type_url_of(message)][message.name] = message


def mesh_allows_passthrough(mesh: Mesh | None) -> bool:
    """Kuma's ``Mesh.IsPassthrough``: ``networking.outbound.passthrough``, true when unset."""
    if mesh is None or not mesh.networking:
        return True
    outbound: Any = mesh.networking.get("outbound") or {}
    value = outbound.get("passthrough") if isinstance(outbound, dict) else None
    return value is None or bool(value)


class ProxyParts(NamedTuple):
    """A proxy's resources split by how they can be shared."""

    #: Resources only this proxy has: inbound listeners and clusters, admin, redirect
    #: listeners and passthrough clusters.
    own: list[Message]
    #: The outbound listeners (see ``OutboundPart``).
    outbounds: list[OutboundPart]
    #: How many inbound listeners ``own`` holds.
    inbounds: int = 0
    #: The ``x-kuma-tags`` value of the outbound listeners (``""``: none, the mesh needs none).
    caller_tags: str = ""


def proxy_parts(
    dataplane: Dataplane,
    view: MeshView,
    default_admin_port: int,
    *,
    vip_port: int = DEFAULT_VIP_PORT,
    permissions: PermissionLookup | None = None,
    dns_port: int = 0,
    readiness_port: int = 0,
    policies: ProxyPolicies = EMPTY,
    metrics: SidecarMetrics = NO_SIDECAR_METRICS,
    build_inbounds: bool = True,
    build_admin: bool = True,
) -> ProxyParts:
    """The per-proxy resources and the outbounds of one proxy (see ``generate_proxy``);
    ``build_inbounds`` / ``build_admin`` False: without the inbound listeners and clusters /
    the admin resources (the engine reuses what it built: ``kuma/xds/engine/proxy_memo.py``)."""
    own: list[Message] = []
    networking = dataplane.networking
    if networking is None:
        return ProxyParts(own, [])
    transparent = is_transparent(dataplane)
    inbounds = inbound_parts(dataplane, view, permissions)
    if build_inbounds:
        for part in inbounds:
            own.extend(inbound_resources(dataplane, part, policies))
    if policies:
        own.extend(own_clusters(policies))
    if build_admin:
        own.extend(admin_resources(dataplane, default_admin_port, readiness_port))
    port = admin_port(dataplane, default_admin_port)
    own.extend(prometheus_resources(dataplane, view.mesh, port, metrics))
    probe = probe_listener(dataplane)
    if probe is not None:
        own.append(probe)
    tp = networking.transparent_proxying
    if tp is not None and transparent:
        passthrough = mesh_allows_passthrough(view.mesh)
        for ipv6, inbound_port in (
            (False, tp.redirect_port_inbound),
            (True, ipv6_inbound_redirect_port(dataplane)),
        ):
            if inbound_port == 0:
                continue
            redirect = outbound_redirect_listener(tp.redirect_port_outbound, ipv6)
            if policies:
                apply_passthrough(redirect, policies)
            own.append(redirect)
            own.append(inbound_redirect_listener(inbound_port, ipv6))
            own.append(inbound_passthrough_cluster(ipv6))
            if passthrough:
                own.append(outbound_passthrough_cluster(ipv6))
    found = outbounds_of(dataplane, view, vip_port)
    dns = proxy_dns_listener(
        dataplane,
        found,
        view.vip,
        dns_port,
        named=[(entry.address, entry.names) for entry in view.external_vips()],
    )
    if dns is not None:
        own.append(dns)
    outbounds = [
        OutboundPart(address, port, destination, not transparent)
        for address, port, destination in found
    ]
    caller_tags = caller_tags_header(dataplane) if policies.caller_tags else ""
    return ProxyParts(own, outbounds, len(inbounds), caller_tags)


def generate_proxy(
    dataplane: Dataplane,
    view: MeshView,
    default_admin_port: int,
    *,
    vip_port: int = DEFAULT_VIP_PORT,
    permissions: PermissionLookup | None = None,
    tls_ready: TlsReadiness | None = None,
    dns_port: int = 0,
    readiness_port: int = 0,
    policies: ProxyPolicies = EMPTY,
    metrics: SidecarMetrics = NO_SIDECAR_METRICS,
) -> Resources:
    """Every resource of one proxy: type URL → resource name → message. ``dns_port``: the
    port of the proxy's DNS listener (its node metadata ``dataplane.dns.port``), 0 for none;
    ``readiness_port``: kuma-dp's readiness reporter (``dataplane.readinessReporter.port``),
    0 for none (the proxy's ``/ready`` is then Envoy's); ``metrics``: what kuma-dp reports
    for the Prometheus endpoint (hijacker socket, certificate files).

    The proxy's own resources first, then its outbound listeners, then the cluster and
    ClusterLoadAssignment of each outbound service (a later resource replaces an earlier one
    of the same name: an engine assembling the same parts must keep this order).
    """
    result: Resources = {types.CLUSTER: {}, types.ENDPOINT: {}, types.LISTENER: {}}
    parts = proxy_parts(
        dataplane,
        view,
        default_admin_port,
        vip_port=vip_port,
        permissions=permissions,
        dns_port=dns_port,
        readiness_port=readiness_port,
        policies=policies,
        metrics=metrics,
    )
    for message in parts.own:
        _put(result, message)
    listeners, clusters = result[types.LISTENER], result[types.CLUSTER]
    protocols: dict[str, str] = {}
    destinations: dict[Destination, None] = {}
    for address, port, destination, bind_to_port in parts.outbounds:
        service = destination.service
        protocol = protocols.get(service)
        if protocol is None:
            protocol = protocols[service] = view.protocol(service)
        plan, reached = outbound_plan(policies, destination, protocol, view.protocol)
        listener = policy_outbound_listener(
            address,
            port,
            destination,
            protocol,
            policies,
            bind_to_port=bind_to_port,
            plan=plan,
            caller_tags=parts.caller_tags,
        )
        listeners[listener.name] = listener
        destinations.update(dict.fromkeys(reached))
    ipv6 = is_ipv6_proxy(dataplane)
    for destination in destinations:
        name = destination.cluster_name
        service = destination.service
        if service not in protocols:
            protocols[service] = view.protocol(service)
        external = view.external(service)
        if external and routes_through_egress(view.mesh):
            assert view.mesh is not None
            clusters[name] = egress_cluster(
                destination, protocols[service], view.mesh.name, policies
            )
            # The consumer's locality shapes it too, as the engine's shaped CLA (Kuma runs
            # ConfigureEndpointsLocalityAware on it, egressEnabled).
            result[types.ENDPOINT][name] = _shaped(
                destination_load_assignment(
                    destination, egress_endpoints(external, view.zone_egresses())
                ),
                policies,
                service,
                dataplane,
                True,
            )
            continue
        if external:
            clusters[name] = external_cluster(
                destination, protocols[service], external, ipv6=ipv6, policies=policies
            )
            continue
        tls_mesh = upstream_tls_mesh(view.mesh, service, tls_ready)
        clusters[name] = policy_service_cluster(destination, protocols[service], policies, tls_mesh)
        load_assignment = destination_load_assignment(
            destination, view.endpoints(service), view.locality()
        )
        result[types.ENDPOINT][name] = _shaped(
            load_assignment, policies, service, dataplane, routes_through_egress(view.mesh)
        )
    return result


def _shaped(
    load_assignment: endpoint_pb2.ClusterLoadAssignment,
    policies: ProxyPolicies,
    service: str,
    dataplane: Dataplane,
    egress: bool,
) -> endpoint_pb2.ClusterLoadAssignment:
    """The CLA as the consumer's MeshLoadBalancingStrategy locality shape rewrites it."""
    shape = locality_shape(policies, service, dataplane, egress=egress)
    return load_assignment if shape is None else shape_load_assignment(load_assignment, shape)
