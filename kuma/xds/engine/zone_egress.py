"""The ZoneEgress proxy kind in the engine: a connected egress (node id ``.<name>``, its
ZoneEgress stored in this zone: ``Meshes.zone_egress_proxies``) is assembled from every mesh
that routes through egresses (``routing.zoneEgress``, mTLS on) and its ExternalServices; the
generation rules are ``kuma/xds/generate/zone_egress.py``.

It registers in the proxy index's selection slot under the keys of what it read, so it is
re-assembled only when one of them changes:

* ``mesh_key(mesh)`` for every mesh known (mTLS or ``routing`` turned on or off),
* ``EXTERNALS_KEY``: an ExternalService created, changed or deleted in any mesh,
* ``endpoints_key(mesh, service)`` for each service it carries (a Secret its TLS reads),
* for each mesh it carries, ``egress_policy_key(mesh)`` (a policy of a kind the egress applies,
  ``kuma.policies.egress``, newly selecting one of the mesh's ExternalServices:
  ``handlers/egress_policy.py``) and the selection key of every policy it read (that policy
  changed or deleted),
* ``remote_key(mesh)``: an entry other zones' ingresses list in the mesh changed (the
  ZoneIngress handler), and ``kind_key`` of the route kinds (subsets become filter chains):
  the egress passes those services through to the remote ingresses (``egress_internal.py``).

Only ExternalServices reachable from this zone are terminated here (no ``kuma.io/zone`` tag, or
this zone's: Kuma's ``IsReachableFromZone``); one tagged with another zone is passed through to
that zone's ingress when it lists it.

A sidecar's change, a Dataplane's or any other policy's (of another kind, or selecting no
ExternalService), never re-assembles it.
"""

from __future__ import annotations

from collections.abc import Hashable

from envoy.config.listener.v3.listener_components_pb2 import FilterChain

from kuma.policies.egress import egress_policies, service_tags
from kuma.resources import ZoneEgress
from kuma.xds import types
from kuma.xds.generate.egress_internal import RemoteService, remote_parts
from kuma.xds.generate.external import external_protocol
from kuma.xds.generate.via_egress import routes_through_egress
from kuma.xds.generate.zone_egress import EgressService, egress_permissions, generate_zone_egress
from kuma.xds.snapshot import VersionedResource

from .interner import Interner
from .mesh_state import Meshes
from .watches import ProxyResources
from .zone_ingress import (
    ROUTE_KINDS,
    IngressAssembly,
    endpoints_key,
    kind_key,
    mesh_key,
    route_subsets,
)

#: Selection key of the egresses: any ExternalService changed (``handlers/external_service``).
EXTERNALS_KEY: Hashable = ("ExternalServices",)


def egress_policy_key(mesh: str) -> Hashable:
    """Selection key of the egresses carrying ``mesh``: a policy they apply newly selects one
    of its ExternalServices."""
    return ("egress-policies", mesh)


def remote_key(mesh: str) -> Hashable:
    """Selection key of the egresses: what other zones' ingresses list in ``mesh`` changed."""
    return ("remote", mesh)


def remote_services(meshes: Meshes) -> tuple[list[RemoteService], set[Hashable]]:
    """The services other zones' ingresses list in the meshes routing through egresses, in
    (mesh, service) order, and the keys read."""
    selections: set[Hashable] = set()
    found: list[RemoteService] = []
    for mesh in sorted(meshes.states(), key=lambda m: m.name):
        if not routes_through_egress(mesh.mesh):
            continue
        selections.add(remote_key(mesh.name))
        selections.update(kind_key(kind, mesh.name) for kind in ROUTE_KINDS)
        subsets = route_subsets(mesh)
        for service in sorted(mesh.remote_services()):
            wanted = tuple(sorted(subsets.get(service, ())))
            found.append(RemoteService(mesh.name, service, wanted, mesh.remote_endpoints(service)))
    return found, selections


def egress_services(meshes: Meshes) -> tuple[list[EgressService], set[Hashable]]:
    """What this zone's egresses carry, in (mesh, service) order, and the keys read."""
    selections: set[Hashable] = {EXTERNALS_KEY}
    found: list[EgressService] = []
    for mesh in sorted(meshes.states(), key=lambda m: m.name):
        selections.add(mesh_key(mesh.name))
        if not routes_through_egress(mesh.mesh):
            continue
        selections.add(egress_policy_key(mesh.name))
        by_kind = mesh.policies_by_kind()
        for service in sorted(mesh.externals.services()):
            selections.add(endpoints_key(mesh.name, service))
            zone = meshes.cross_zone.zone
            endpoints = tuple(
                e for e in mesh.externals.endpoints(service) if e.zone in (None, "", zone)
            )
            if not endpoints:
                continue  # its Secret is missing (left out, as for sidecars), or another zone's
            policies = egress_policies(service_tags(service), by_kind, presorted=True)
            for matched in policies.by_kind.values():
                # Each policy's selection key (``handlers/policy.selection_key``).
                selections.update((p.TYPE, p.mesh, p.name) for p in matched.policies)
            found.append(
                EgressService(
                    mesh.name,
                    service,
                    external_protocol(endpoints),
                    endpoints,
                    egress_permissions(policies),
                    policies,
                )
            )
    return found, selections


class RemotePartsCache:
    """Per remote service (its tags, subsets and endpoints: :class:`RemoteService`) the
    egress's filter chains and interned cluster and ClusterLoadAssignment, so a change of one
    remote entry rebuilds one service's parts, not every one (the listener is still rebuilt).
    Keeps only what the last assembly used."""

    def __init__(self, interner: Interner) -> None:
        self._interner = interner
        self._parts: dict[
            RemoteService, tuple[tuple[FilterChain, ...], VersionedResource, VersionedResource]
        ] = {}

    def parts(
        self, items: list[RemoteService]
    ) -> list[tuple[tuple[FilterChain, ...], VersionedResource, VersionedResource]]:
        fresh = {}
        for item in items:
            held = self._parts.get(item)
            if held is None:
                built = remote_parts(item)
                cla = built.load_assignment
                held = (
                    built.chains,
                    self._interner.intern(types.CLUSTER, built.cluster.name, built.cluster),
                    self._interner.intern(types.ENDPOINT, cla.cluster_name, cla),
                )
            fresh[item] = held
        self._parts = fresh
        return list(fresh.values())


def assemble_zone_egress(
    egress: ZoneEgress, meshes: Meshes, interner: Interner, cache: RemotePartsCache | None = None
) -> IngressAssembly:
    resources: ProxyResources = {types.CLUSTER: {}, types.ENDPOINT: {}, types.LISTENER: {}}
    services, selections = egress_services(meshes)
    remote, remote_selections = remote_services(meshes)
    parts = (cache or RemotePartsCache(interner)).parts(remote)
    chains = [chain for part in parts for chain in part[0]]
    listener, clusters = generate_zone_egress(egress, services, chains)
    for _, cluster_resource, cla_resource in parts:
        resources[types.CLUSTER][cluster_resource.name] = cluster_resource
        resources[types.ENDPOINT][cla_resource.name] = cla_resource
    selections |= remote_selections
    for cluster in clusters:
        resources[types.CLUSTER][cluster.name] = interner.intern(
            types.CLUSTER, cluster.name, cluster
        )
    if listener is not None:
        resources[types.LISTENER][listener.name] = interner.intern(
            types.LISTENER, listener.name, listener
        )
    return IngressAssembly(resources, frozenset(selections))
