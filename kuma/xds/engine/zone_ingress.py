"""The ZoneIngress proxy kind in the engine: which services an ingress carries, and its
assembly from per-service parts cached until the service's endpoints change.

A connected ingress (node id ``.<name>``, Kuma's: no mesh) is assembled from its stored
ZoneIngress (kept by ``handlers/zone_ingress_proxy.py`` in ``Meshes.zone_ingresses``) and the
meshes' local endpoints; the generation rules are ``kuma/xds/generate/zone_ingress.py``. It
registers in the proxy index's selection slot under the keys of what it read:

* ``endpoints_key(mesh, service)`` for each service it carries (the engine re-assembles it when
  the service is touched: only that service's parts are rebuilt, and only what changed, usually
  the one ClusterLoadAssignment, is sent),
* ``mesh_key(mesh)`` for each mesh its ``availableServices`` name (mTLS turned on or off),
* ``kind_key(kind, mesh)`` for the route kinds whose subsets become filter chains.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterator, Mapping, Sequence

from envoy.config.listener.v3 import listener_components_pb2
from google.protobuf.message import Message

from kuma.policies.backendref import BackendRef
from kuma.resources import ZoneIngress
from kuma.resources.model import MESH_SERVICE_SUBSET, SERVICE_TAG, Policy
from kuma.resources.mtls import enabled_backend
from kuma.xds import types
from kuma.xds.generate import zone_ingress as gen
from kuma.xds.generate.endpoints import Endpoint
from kuma.xds.generate.via_egress import egress_endpoints
from kuma.xds.snapshot import VersionedResource

from .interner import Interner
from .mesh_state import Meshes, MeshState
from .watches import ProxyRecord, ProxyResources

#: Route kinds whose backendRefs name subsets a caller's SNI may carry.
ROUTE_KINDS = ("MeshHTTPRoute", "MeshTCPRoute")


def endpoints_key(mesh: str, service: str) -> Hashable:
    """Selection key of the proxies that read a service's endpoints other than as consumers."""
    return ("endpoints", mesh, service)


def mesh_key(mesh: str) -> Hashable:
    """Selection key of the proxies outside ``mesh`` that read its settings."""
    return ("Mesh", mesh)


def kind_key(kind: str, mesh: str) -> Hashable:
    """Selection key of the proxies that read every policy of ``kind`` in ``mesh``."""
    return (kind, mesh)


def available_services(ingress: ZoneIngress) -> dict[str, set[str]]:
    """Mesh → the services the ingress makes reachable, from its ``availableServices``: the one
    place that field is read for its Envoy config (kept by the zone's writer,
    kuma/cp/ingress_services.py; it lists the ExternalServices tagged with this zone in meshes
    routing through zone egresses)."""
    found: dict[str, set[str]] = {}
    for entry in ingress.available_services:
        service = entry.tags.get(SERVICE_TAG)
        if service:
            found.setdefault(entry.mesh, set()).add(service)
    return found


def local_endpoints(mesh: MeshState, service: str) -> tuple[Endpoint, ...]:
    """This zone's endpoints of a service (never other zones' ingresses: the ingress only
    leads into its own zone): ``MeshState.endpoints`` also holds other zones' ingresses. An
    ExternalService's are this zone's egresses, which reach it (Kuma's ingress → egress leg,
    pkg/xds/ingress/outbound.go: another zone's egress passed it here by SNI)."""
    external = mesh.externals.endpoints(service)
    if external:
        return egress_endpoints(external, mesh.zone_egresses())
    return tuple(mesh.local_endpoints(service))


def route_subsets(mesh: MeshState) -> dict[str, set[gen.Subset]]:
    """Service → the subsets the mesh's routes send to (backendRefs of kind MeshServiceSubset)."""
    subsets: dict[str, set[gen.Subset]] = {}
    by_kind = mesh.policies_by_kind()
    for kind in ROUTE_KINDS:
        for policy in by_kind.get(kind, ()):
            for ref in _backend_refs(policy):
                if ref.kind == MESH_SERVICE_SUBSET and ref.tags:
                    subset = tuple(sorted((k, v) for k, v in ref.tags.items() if k != SERVICE_TAG))
                    subsets.setdefault(ref.name, set()).add(subset)
    return subsets


def _backend_refs(policy: Policy) -> Iterator[BackendRef]:
    for to in getattr(policy.spec, "to", None) or ():
        for rule in getattr(to, "rules", ()):
            yield from getattr(rule.default, "backend_refs", None) or ()


_serials = itertools.count()


class _ServiceParts:
    __slots__ = ("chains", "cluster", "load_assignment", "serial")

    def __init__(
        self,
        cluster: VersionedResource,
        load_assignment: VersionedResource,
        chains: tuple[listener_components_pb2.FilterChain, ...],
    ) -> None:
        self.cluster = cluster
        self.load_assignment = load_assignment
        self.chains = chains
        #: Unique for the life of the process (a listener built from these parts is keyed by
        #: it; an ``id`` could be reused by parts built later).
        self.serial = next(_serials)


class ZoneIngressParts:
    """Per (mesh, service, subsets) the cluster, CLA and filter chains, built once for every
    ingress and kept until the service is touched; per ingress its last listener."""

    def __init__(self, interner: Interner) -> None:
        self._interner = interner
        #: (mesh, service) → subsets → parts.
        self._services: dict[tuple[str, str], dict[tuple[gen.Subset, ...], _ServiceParts]] = {}
        self._listeners: dict[str, tuple[Hashable, VersionedResource]] = {}
        #: Per ingress, the subsets and parts of each service its last assembly used.
        self._used: dict[str, dict[tuple[str, str], tuple[tuple[gen.Subset, ...], _ServiceParts]]]
        self._used = {}

    def endpoints_changed(self, mesh: str, service: str) -> None:
        self._services.pop((mesh, service), None)

    def forget(self, name: str) -> None:
        self._listeners.pop(name, None)
        self._used.pop(name, None)

    def patch(
        self,
        record: ProxyRecord,
        touched: Sequence[tuple[str, str]],
        meshes: Meshes,
        since: float | None,
    ) -> bool | None:
        """Put the touched services' new ClusterLoadAssignments into a connected ingress's
        config and notify it; whether anything changed. None when that is not enough (a
        service's chains or cluster changed, it appeared or lost its endpoints): re-assemble."""
        used = self._used.get(record.name)
        resources = record.resources
        if used is None or resources is None:
            return None
        fresh: list[tuple[tuple[str, str], tuple[gen.Subset, ...], _ServiceParts]] = []
        for mesh_name, service in touched:
            mesh = meshes.get(mesh_name)
            entry = used.get((mesh_name, service))
            if mesh is None or entry is None or not local_endpoints(mesh, service):
                return None
            subsets, old = entry
            new = self.service(mesh, service, subsets)
            if new.cluster.version != old.cluster.version or new.chains != old.chains:
                return None
            fresh.append(((mesh_name, service), subsets, new))
        bucket = resources[types.ENDPOINT]
        changed = []
        for key, subsets, new in fresh:
            used[key] = (subsets, new)
            cla = new.load_assignment
            current = bucket.get(cla.name)
            if current is None or current.version != cla.version:
                bucket[cla.name] = cla
                changed.append(cla.name)
        if changed:
            record.notify({types.ENDPOINT: changed}, since)
        return bool(changed)

    def used(
        self, name: str
    ) -> dict[tuple[str, str], tuple[tuple[gen.Subset, ...], _ServiceParts]]:
        """A fresh record of what the assembly of ingress ``name`` uses (its last one)."""
        used = self._used[name] = {}
        return used

    def service(
        self, mesh: MeshState, service: str, subsets: Sequence[gen.Subset]
    ) -> _ServiceParts:
        by_subsets = self._services.setdefault((mesh.name, service), {})
        parts = by_subsets.get(tuple(subsets))
        if parts is None:
            endpoints = local_endpoints(mesh, service)
            chains, relevant = gen.service_chains(mesh.name, service, subsets, endpoints)
            name = gen.cluster_name(mesh.name, service)
            intern = self._interner.intern
            parts = by_subsets[tuple(subsets)] = _ServiceParts(
                intern(types.CLUSTER, name, gen.ingress_cluster(mesh.name, service, relevant)),
                intern(
                    types.ENDPOINT,
                    name,
                    gen.ingress_load_assignment(mesh.name, service, endpoints),
                ),
                chains,
            )
        return parts

    def listener(
        self, ingress: ZoneIngress, proxy_id: str, parts: Sequence[_ServiceParts]
    ) -> VersionedResource:
        networking = ingress.networking
        address, port = (networking.address, networking.port) if networking else ("", 0)
        # The listener is rebuilt only when a service's parts were (ids of the cached parts).
        key = (address, port, ingress.zone, proxy_id, tuple(p.serial for p in parts))
        last = self._listeners.get(ingress.name)
        if last is not None and last[0] == key:
            return last[1]
        chains = [c for p in parts for c in p.chains]
        if chains:
            message = gen.ingress_listener(address, port, chains)
        else:
            message = gen.empty_listener(address, port, proxy_id, ingress.zone)
        resource = self._interner.intern(types.LISTENER, message.name, message)
        self._listeners[ingress.name] = (key, resource)
        return resource


class IngressAssembly:
    __slots__ = ("resources", "selections")

    def __init__(self, resources: ProxyResources, selections: frozenset[Hashable]) -> None:
        self.resources = resources
        self.selections = selections


def assemble_zone_ingress(
    ingress: ZoneIngress, proxy_id: str, meshes: Meshes, parts: ZoneIngressParts
) -> IngressAssembly:
    """Every mesh with mTLS on, of those ``availableServices`` name, in name order; in each,
    the services with local endpoints, in name order."""
    resources: ProxyResources = {types.CLUSTER: {}, types.ENDPOINT: {}, types.LISTENER: {}}
    selections: set[Hashable] = set()
    used: list[_ServiceParts] = []
    record = parts.used(ingress.name)
    for mesh_name, services in sorted(available_services(ingress).items()):
        selections.add(mesh_key(mesh_name))
        mesh = meshes.get(mesh_name)
        if mesh is None or enabled_backend(mesh.mesh) is None:
            continue  # passthrough by SNI needs the callers' mTLS (Kuma: cross-zone needs it)
        selections.update(kind_key(kind, mesh_name) for kind in ROUTE_KINDS)
        subsets = route_subsets(mesh)
        for service in sorted(services):
            selections.add(endpoints_key(mesh_name, service))
            if not local_endpoints(mesh, service):
                continue
            wanted = tuple(sorted(subsets.get(service, ())))
            service_parts = parts.service(mesh, service, wanted)
            record[(mesh_name, service)] = (wanted, service_parts)
            used.append(service_parts)
            resources[types.CLUSTER][service_parts.cluster.name] = service_parts.cluster
            resources[types.ENDPOINT][service_parts.load_assignment.name] = (
                service_parts.load_assignment
            )
    listener = parts.listener(ingress, proxy_id, used)
    resources[types.LISTENER][listener.name] = listener
    return IngressAssembly(resources, frozenset(selections))


def from_scratch(ingress: ZoneIngress, proxy_id: str, meshes: Meshes) -> list[Message]:
    """The same config built without caches (tests hold the engine to it)."""
    services: dict[str, Mapping[str, Sequence[gen.Subset]]] = {}
    endpoints: dict[tuple[str, str], Sequence[Endpoint]] = {}
    for mesh_name, names in available_services(ingress).items():
        mesh = meshes.get(mesh_name)
        if mesh is None or enabled_backend(mesh.mesh) is None:
            continue
        subsets = route_subsets(mesh)
        kept = {}
        for service in names:
            found = local_endpoints(mesh, service)
            if found:
                kept[service] = sorted(subsets.get(service, ()))
                endpoints[(mesh_name, service)] = found
        services[mesh_name] = kept
    networking = ingress.networking
    address, port = (networking.address, networking.port) if networking else ("", 0)
    return list(
        gen.generate_zone_ingress(proxy_id, ingress.zone, address, port, services, endpoints)
    )
