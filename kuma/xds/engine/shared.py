"""Resources shared by many proxies, each built once and keyed by *everything* it depends on.

A shared resource (a service's Cluster and ClusterLoadAssignment, an outbound listener) is
served to every consumer of the service. If an input that shapes it were missing from its key,
a change of that input would keep serving the old resource: so the inputs are gathered in one
place, :func:`service_inputs`, and every key and every build below goes through it.

To make a new input shape these resources (the mesh's mTLS state, a policy, an outbound's
tags): add a field to :class:`ServiceInputs`, fill it in :func:`service_inputs`, pass it to the
builder here. A change of the input is detected by :meth:`SharedResources.inputs_changed`
(the engine then re-assembles the service's consumers instead of patching them).
"""

from __future__ import annotations

from typing import NamedTuple

from kuma.xds import types
from kuma.xds.generate.clusters import service_cluster
from kuma.xds.generate.endpoints import load_assignment
from kuma.xds.generate.listeners import outbound_listener
from kuma.xds.snapshot import VersionedResource

from .interner import Interner
from .mesh_state import MeshState


class ServiceInputs(NamedTuple):
    """Everything a service's shared Cluster and outbound listeners depend on, besides the
    service's name (endpoints shape only the ClusterLoadAssignment)."""

    protocol: str


def service_inputs(mesh: MeshState, service: str) -> ServiceInputs:
    return ServiceInputs(protocol=mesh.protocol(service))


class SharedResources:
    def __init__(self, interner: Interner) -> None:
        self._interner = interner
        #: (mesh, service) → (the inputs it was built from, the Cluster).
        self._clusters: dict[tuple[str, str], tuple[ServiceInputs, VersionedResource]] = {}
        self._load_assignments: dict[tuple[str, str], VersionedResource] = {}

    def cluster(self, mesh: MeshState, service: str) -> VersionedResource:
        key = (mesh.name, service)
        inputs = service_inputs(mesh, service)
        cached = self._clusters.get(key)
        if cached is not None and cached[0] == inputs:
            return cached[1]
        message = service_cluster(service, inputs.protocol)
        resource = self._interner.intern(types.CLUSTER, message.name, message)
        self._clusters[key] = (inputs, resource)
        return resource

    def load_assignment(self, mesh: MeshState, service: str) -> VersionedResource:
        key = (mesh.name, service)
        cached = self._load_assignments.get(key)
        if cached is None:
            message = load_assignment(service, mesh.endpoints(service))
            cached = self._interner.intern(types.ENDPOINT, message.cluster_name, message)
            self._load_assignments[key] = cached
        return cached

    def outbound_listener(
        self, mesh: MeshState, address: str, port: int, service: str, bind_to_port: bool
    ) -> VersionedResource:
        inputs = service_inputs(mesh, service)
        # No mesh name in the key: the same listener is shared across meshes.
        key = ("outbound", address, port, service, bind_to_port, inputs)
        listener = self._interner.cached(key)
        if listener is None:
            message = outbound_listener(
                address, port, service, inputs.protocol, bind_to_port=bind_to_port
            )
            listener = self._interner.remember(
                key, self._interner.intern(types.LISTENER, message.name, message)
            )
        return listener

    def endpoints_changed(self, mesh: MeshState, service: str) -> None:
        """Forget the service's ClusterLoadAssignment (rebuilt on the next read)."""
        self._load_assignments.pop((mesh.name, service), None)

    def inputs_changed(self, mesh: MeshState, service: str) -> bool:
        """True if the service's Cluster was built from inputs that differ from today's: its
        consumers' listeners and clusters must be rebuilt (not just their endpoints patched)."""
        cached = self._clusters.get((mesh.name, service))
        return cached is not None and cached[0] != service_inputs(mesh, service)
