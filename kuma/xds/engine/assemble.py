"""Assembling one proxy's desired state from per-proxy parts and shared, cached parts.

The per-proxy parts (inbound listeners and clusters, admin, redirect listeners) come from
``kuma.xds.generate.proxy.proxy_parts``; the shared parts (each outbound destination's Cluster
and ClusterLoadAssignment, outbound listeners) are built once and taken from caches. The result
is, resource for resource, what ``generate_proxy`` builds from scratch: the invariant test
holds the two to that.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from types import MappingProxyType

from google.protobuf.message import Message

from kuma.policies import OutboundFingerprint, outbound_fingerprints, resolve
from kuma.policies.locality_aware import LocalityShape, locality_shape
from kuma.resources import Dataplane
from kuma.xds import types
from kuma.xds.generate.destination import Destination
from kuma.xds.generate.external import is_ipv6_proxy
from kuma.xds.generate.inbounds import inbound_parts
from kuma.xds.generate.outbounds import outbound_plan
from kuma.xds.generate.prometheus import NO_SIDECAR_METRICS, SidecarMetrics
from kuma.xds.generate.proxy import proxy_parts, type_url_of
from kuma.xds.generate.via_egress import routes_through_egress

from .interner import Interner
from .mesh_state import MeshState
from .proxy_memo import ProxyMemo
from .shared import ServiceInputs, SharedResources, service_inputs
from .watches import ProxyResources

#: Most proxies reach whole services only: they share this empty mapping.
NO_SUBSETS: Mapping[str, tuple[Destination, ...]] = MappingProxyType({})
NO_LOCALITIES: Mapping[str, LocalityShape] = MappingProxyType({})


class Assembly:
    """The result of assembling one proxy."""

    __slots__ = ("localities", "outbound_services", "resources", "selections", "subsets")

    def __init__(
        self,
        resources: ProxyResources,
        outbound_services: frozenset[str],
        selections: frozenset[Hashable] = frozenset(),
        subsets: Mapping[str, tuple[Destination, ...]] = NO_SUBSETS,
        localities: Mapping[str, LocalityShape] = NO_LOCALITIES,
    ) -> None:
        self.resources = resources
        #: The services whose shared resources the proxy holds (the index's consumers).
        self.outbound_services = outbound_services
        #: The destinations of each consumed service the proxy reaches, for the services it
        #: reaches other than (or besides) whole: where their endpoints are patched.
        self.subsets = subsets
        #: Selection keys (e.g. the policies that select this proxy) for the index's
        #: selection slot: a change of one of them re-assembles exactly these proxies.
        self.selections = selections
        #: Service → the locality shape its CLAs take for this proxy (MeshLoadBalancingStrategy
        #: localityAwareness); services without one get the shared CLA.
        self.localities = localities


def assemble(
    dataplane: Dataplane,
    mesh: MeshState,
    default_admin_port: int,
    interner: Interner,
    shared: SharedResources,
    *,
    dns_port: int = 0,
    readiness_port: int = 0,
    metrics: SidecarMetrics = NO_SIDECAR_METRICS,
    access_log_socket: str = "",
    memo: ProxyMemo | None = None,
) -> Assembly:
    """``memo``: the proxy's own resources as last built (None: build them all)."""
    resources: ProxyResources = {types.CLUSTER: {}, types.ENDPOINT: {}, types.LISTENER: {}}
    policies = resolve(
        dataplane, mesh.policies_by_kind(), presorted=True, access_log_socket=access_log_socket
    )
    # The inbound listeners and clusters first, as ``proxy_parts`` would put them, then the
    # admin resources (names no other resource of a proxy takes).
    if memo is None:
        memo = ProxyMemo()
    for resource in memo.resources(dataplane, inbound_parts(dataplane, mesh), policies, interner):
        resources[resource.type_url][resource.name] = resource
    for resource in memo.admin(dataplane, default_admin_port, readiness_port, interner):
        resources[resource.type_url][resource.name] = resource
    parts = proxy_parts(
        dataplane,
        mesh,
        default_admin_port,
        dns_port=dns_port,
        readiness_port=readiness_port,
        policies=policies,
        metrics=metrics,
        build_inbounds=False,
        build_admin=False,
    )
    for message in parts.own:
        type_url = type_url_of(message)
        name = _resource_name(message)
        resources.setdefault(type_url, {})[name] = interner.intern(type_url, name, message)
    listeners = resources[types.LISTENER]
    destinations: dict[Destination, None] = {}
    # Per outbound service, read once for all its listeners and clusters: what the proxy's
    # policies make of it and its service inputs (both keys of its shared resources,
    # kuma/xds/engine/shared.py).
    per_service: dict[str, tuple[OutboundFingerprint, ServiceInputs]] = {}
    fingerprint_of = outbound_fingerprints(policies)
    for address, port, destination, bind_to_port in parts.outbounds:
        service = destination.service
        found = per_service.get(service)
        if found is None:
            found = per_service[service] = _service(fingerprint_of, mesh, service)
        fingerprint, inputs = found
        plan, reached = (
            outbound_plan(policies, destination, inputs.protocol, mesh.protocol)
            if fingerprint.listener
            else (None, (destination,))
        )
        listener = shared.outbound_listener(
            mesh,
            address,
            port,
            destination,
            bind_to_port,
            policies,
            fingerprint.listener,
            plan,
            parts.caller_tags,
            inputs,
        )
        listeners[listener.name] = listener
        destinations.update(dict.fromkeys(reached))
    ipv6: bool | None = None
    localities: dict[str, LocalityShape] = {}
    egress = routes_through_egress(mesh.mesh)
    for destination in destinations:
        found = per_service.get(destination.service)
        if found is None:  # a service reached only through a route's backendRefs
            found = per_service[destination.service] = _service(
                fingerprint_of, mesh, destination.service
            )
        fingerprint, inputs = found
        if inputs.external and inputs.egresses is None:
            # An external service reached directly: its cluster holds its endpoints (no EDS).
            if ipv6 is None:
                ipv6 = is_ipv6_proxy(dataplane)
            cluster = shared.cluster(mesh, destination, policies, fingerprint.cluster, ipv6, inputs)
            resources[types.CLUSTER][cluster.name] = cluster
            continue
        cluster = shared.cluster(mesh, destination, policies, fingerprint.cluster, inputs=inputs)
        resources[types.CLUSTER][cluster.name] = cluster
        shape = locality_shape(policies, destination.service, dataplane, egress=egress)
        if shape is None:
            load_assignment = shared.load_assignment(mesh, destination)
        else:
            localities[destination.service] = shape
            load_assignment = shared.shaped_load_assignment(mesh, destination, shape)
        resources[types.ENDPOINT][load_assignment.name] = load_assignment
    services = frozenset(d.service for d in destinations)
    # The policies that select the proxy: a change of one re-assembles it (selection slot).
    selections = frozenset(
        (policy.TYPE, policy.mesh, policy.name)
        for matched in policies.by_kind.values()
        for policy in matched.policies
    )
    return Assembly(
        resources,
        services,
        selections,
        subsets=subsets_of(destinations),
        localities=localities or NO_LOCALITIES,
    )


def _service(
    fingerprint_of: Callable[[str], OutboundFingerprint], mesh: MeshState, service: str
) -> tuple[OutboundFingerprint, ServiceInputs]:
    return fingerprint_of(service), service_inputs(mesh, service)


def subsets_of(destinations: Iterable[Destination]) -> Mapping[str, tuple[Destination, ...]]:
    """Service → its destinations, for the services reached through a subset."""
    by_service: dict[str, list[Destination]] = {}
    for destination in destinations:
        by_service.setdefault(destination.service, []).append(destination)
    subsets = {
        service: tuple(found)
        for service, found in by_service.items()
        if any(d.subset for d in found)
    }
    return subsets or NO_SUBSETS


def _resource_name(message: Message) -> str:
    """A resource's name: ``name`` (listeners, clusters) or ``cluster_name`` (CLAs)."""
    field = "cluster_name" if message.DESCRIPTOR.full_name.endswith("LoadAssignment") else "name"
    return str(getattr(message, field))
