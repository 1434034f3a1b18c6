"""Resources shared by many proxies, each built once and keyed by *everything* it depends on.

A shared resource (a service's Cluster and ClusterLoadAssignment, an outbound listener) is
served to every consumer of the service. If an input that shapes it were missing from its key,
a change of that input would keep serving the old resource: so the inputs are gathered in one
place, :func:`service_inputs`, and every key and every build below goes through it.

An outbound reaches a *destination*: its service, or the subset of it that the outbound's
extra tags select (``kuma.xds.generate.destination``). A subset has a Cluster and a
ClusterLoadAssignment of its own (``<service>-<hash of the tags>``), built from the same
service inputs; its endpoints are the service's that carry its tags. So the caches below are
keyed by destination, grouped per (mesh, service): a change of the service's endpoints or
inputs reaches every destination of it at once.

To make a new input shape these resources (the mesh's mTLS state, a policy): add a field to
:class:`ServiceInputs`, fill it in :func:`service_inputs`, pass it to the builder here. A
change of the input is detected by :meth:`SharedResources.inputs_changed` (the engine then
re-assembles the service's consumers instead of patching them).

Policies are the one input that differs per *consumer*: what a proxy's policies make of the
service (``kuma.policies.outbound_fingerprint``: the confs, canonically serialized; ``b""``
without policies) is part of every key beside the destination, so proxies with the same
policies share one resource and different policies never collide. Listeners are keyed by the
fingerprint's listener part and clusters by its cluster part: a change that shapes only
clusters finds every outbound listener already built. A policy change
re-assembles the proxies it selects (the engine's selection slot), which then pick the
resources of their new fingerprint.

The callers' tags (Kuma's ``x-kuma-tags`` header, ``kuma.policies.caller_tags``) are the other
per-consumer input, of outbound listeners only: in a mesh where a policy needs them, each
listener is keyed by its proxy's serialized tag set (so proxies with the same tags still
share); elsewhere the value is ``""`` and sharing is unchanged. A change of the mesh's need
re-assembles the whole mesh (the engine's policy handler).
"""

from __future__ import annotations

from typing import NamedTuple

from envoy.config.endpoint.v3 import endpoint_pb2

from kuma.policies import EMPTY, ProxyPolicies
from kuma.policies.locality_aware import LocalityShape, shape_load_assignment
from kuma.policies.plugin import OutboundPlan
from kuma.xds import types
from kuma.xds.generate.cross_zone import LOCAL_ONLY, LocalityPlan
from kuma.xds.generate.destination import Destination, destination_load_assignment
from kuma.xds.generate.external import ExternalEndpoint, external_cluster
from kuma.xds.generate.outbounds import policy_outbound_listener, policy_service_cluster
from kuma.xds.generate.proxy import upstream_tls_mesh
from kuma.xds.generate.via_egress import (
    EgressAddress,
    egress_cluster,
    egress_endpoints,
    routes_through_egress,
)
from kuma.xds.snapshot import VersionedResource

from .interner import Interner
from .mesh_state import MeshState


class ServiceInputs(NamedTuple):
    """Everything a service's shared Cluster and outbound listeners depend on, besides the
    service's name (endpoints shape only the ClusterLoadAssignment)."""

    protocol: str
    #: The mesh whose mTLS the cluster originates; None for plaintext (mTLS off, or a
    #: PERMISSIVE service not yet TLS-ready, or an external service).
    tls_mesh: str | None = None
    #: The service's ExternalServices, resolved: its clusters carry them (no EDS); empty for
    #: a service of the mesh.
    external: tuple[ExternalEndpoint, ...] = ()
    #: The zone's egresses when the mesh reaches its external services through them (the
    #: cluster is then EDS with the mesh's mTLS; the endpoints are the egresses); else None.
    egresses: tuple[EgressAddress, ...] | None = None


def service_inputs(mesh: MeshState, service: str) -> ServiceInputs:
    external = mesh.externals.endpoints(service)
    if external and routes_through_egress(mesh.mesh):
        egresses = tuple(mesh.zone_egresses())
        return ServiceInputs(mesh.protocol(service), mesh.name, external, egresses)
    if external:
        return ServiceInputs(mesh.protocol(service), None, external)
    return ServiceInputs(
        protocol=mesh.protocol(service),
        tls_mesh=upstream_tls_mesh(mesh.mesh, service, mesh.tls_ready),
    )


#: Cluster variants of one service kept before its cache starts over.
_MAX_VARIANTS = 64
#: Locality-shaped CLA variants of one service kept before its cache starts over (a shape
#: varies with consumers' affinity tag values, e.g. one per node).
_MAX_SHAPES = 1024


class SharedResources:
    def __init__(self, interner: Interner) -> None:
        self._interner = interner
        #: (mesh, service) → (the inputs its Clusters were built from, Cluster per
        #: (destination, policy fingerprint, IPv6 consumer of an external service)).
        self._clusters: dict[
            tuple[str, str],
            tuple[ServiceInputs, dict[tuple[Destination, bytes, bool], VersionedResource]],
        ] = {}
        #: (mesh, service) → (the mesh's locality plan they were built with,
        #: ClusterLoadAssignment per destination).
        self._load_assignments: dict[
            tuple[str, str], tuple[LocalityPlan, dict[Destination, VersionedResource]]
        ] = {}
        #: (mesh, service) → (destination, locality shape) → (the version of the shared CLA
        #: it was rewritten from, the rewritten CLA).
        self._shaped: dict[
            tuple[str, str], dict[tuple[Destination, LocalityShape], tuple[str, VersionedResource]]
        ] = {}

    def cluster(
        self,
        mesh: MeshState,
        destination: Destination,
        policies: ProxyPolicies = EMPTY,
        fingerprint: bytes = b"",
        ipv6: bool = False,
        inputs: ServiceInputs | None = None,
    ) -> VersionedResource:
        """``ipv6``: the consumer is an IPv6 proxy (an external service's DNS lookups).
        ``inputs``: ``service_inputs(mesh, destination.service)`` when the caller read them
        already (the engine reads them once per service of an assembly, not per resource)."""
        key = (mesh.name, destination.service)
        if inputs is None:
            inputs = service_inputs(mesh, destination.service)
        cached = self._clusters.get(key)
        if cached is None or cached[0] != inputs or len(cached[1]) > _MAX_VARIANTS:
            # New inputs, or many variants seen (old policy ones may be unused): start over.
            cached = self._clusters[key] = (inputs, {})
        direct = bool(inputs.external) and inputs.egresses is None
        variant = (destination, fingerprint, ipv6 and direct)
        resource = cached[1].get(variant)
        if resource is None:
            if inputs.egresses is not None:
                assert inputs.tls_mesh is not None
                message = egress_cluster(destination, inputs.protocol, inputs.tls_mesh, policies)
            elif inputs.external:
                message = external_cluster(
                    destination, inputs.protocol, inputs.external, ipv6=ipv6, policies=policies
                )
            else:
                message = policy_service_cluster(
                    destination, inputs.protocol, policies, inputs.tls_mesh, fingerprint
                )
            resource = self._interner.intern(types.CLUSTER, message.name, message)
            cached[1][variant] = resource
        return resource

    def watch_inputs(self, mesh: MeshState, service: str) -> ServiceInputs:
        """The service's inputs, remembered so that their change re-assembles its consumers,
        for a consumer that builds its clusters itself (a builtin gateway)."""
        inputs = service_inputs(mesh, service)
        cached = self._clusters.get((mesh.name, service))
        if cached is None or cached[0] != inputs:
            self._clusters[(mesh.name, service)] = (inputs, {})
        return inputs

    def load_assignment(self, mesh: MeshState, destination: Destination) -> VersionedResource:
        # The plan (mTLS on: remote ingresses used; local weight; priorities) is a mesh-wide
        # input of every ClusterLoadAssignment: built under another plan, start over.
        key, plan = (mesh.name, destination.service), mesh.locality()
        held = self._load_assignments.get(key)
        if held is None or held[0] != plan:
            held = self._load_assignments[key] = (plan, {})
        by_destination = held[1]
        cached = by_destination.get(destination)
        if cached is None:
            inputs = service_inputs(mesh, destination.service)
            if inputs.egresses is not None:
                endpoints = egress_endpoints(inputs.external, inputs.egresses)
                # An egress endpoint weighs 1 whatever the remote ingresses (Kuma's).
                plan = LOCAL_ONLY
            else:
                endpoints = tuple(mesh.endpoints(destination.service))
            message = destination_load_assignment(destination, endpoints, plan)
            cached = self._interner.intern(types.ENDPOINT, message.cluster_name, message)
            by_destination[destination] = cached
        return cached

    def shaped_load_assignment(
        self, mesh: MeshState, destination: Destination, shape: LocalityShape
    ) -> VersionedResource:
        """The destination's CLA as consumers of locality ``shape`` get it (MeshLoadBalancing-
        Strategy localityAwareness): rewritten from the shared one once per shape, so consumers
        whose tags and zone give the same shape share it."""
        base = self.load_assignment(mesh, destination)
        by_shape = self._shaped.setdefault((mesh.name, destination.service), {})
        held = by_shape.get((destination, shape))
        if held is None or held[0] != base.version:
            if len(by_shape) > _MAX_SHAPES:
                by_shape.clear()  # shapes of consumers since gone may be unused: start over
            message = shape_load_assignment(
                endpoint_pb2.ClusterLoadAssignment.FromString(base.body), shape
            )
            resource = self._interner.intern(types.ENDPOINT, message.cluster_name, message)
            held = by_shape[(destination, shape)] = (base.version, resource)
        return held[1]

    def outbound_listener(
        self,
        mesh: MeshState,
        address: str,
        port: int,
        destination: Destination,
        bind_to_port: bool,
        policies: ProxyPolicies = EMPTY,
        fingerprint: bytes = b"",
        plan: OutboundPlan | None = None,
        caller_tags: str = "",
        inputs: ServiceInputs | None = None,
    ) -> VersionedResource:
        """``inputs``: as for :meth:`cluster`."""
        if inputs is None:
            inputs = service_inputs(mesh, destination.service)
        # Routes also depend on the protocols of the services their backendRefs name.
        protocols = plan.protocols if plan is not None else ()
        # No mesh name in the key: the same listener is shared across meshes.
        key = (
            "outbound",
            address,
            port,
            destination,
            bind_to_port,
            inputs,
            fingerprint,
            protocols,
            caller_tags,
        )
        listener = self._interner.cached(key)
        if listener is None:
            message = policy_outbound_listener(
                address,
                port,
                destination,
                inputs.protocol,
                policies,
                bind_to_port=bind_to_port,
                plan=plan,
                caller_tags=caller_tags,
            )
            listener = self._interner.remember(
                key, self._interner.intern(types.LISTENER, message.name, message)
            )
        return listener

    def endpoints_changed(self, mesh: MeshState, service: str) -> None:
        """Forget the ClusterLoadAssignments of the service's destinations (rebuilt on the
        next read)."""
        self._load_assignments.pop((mesh.name, service), None)
        self._shaped.pop((mesh.name, service), None)

    def inputs_changed(self, mesh: MeshState, service: str) -> bool:
        """True if the service's Clusters were built from inputs that differ from today's: its
        consumers' listeners and clusters must be rebuilt (not just their endpoints patched)."""
        cached = self._clusters.get((mesh.name, service))
        return cached is not None and cached[0] != service_inputs(mesh, service)
