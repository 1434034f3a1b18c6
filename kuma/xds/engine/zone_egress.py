"""The ZoneEgress proxy kind in the engine: a connected egress (node id ``.<name>``, its
ZoneEgress stored in this zone: ``Meshes.zone_egress_proxies``) is assembled from every mesh
that routes through egresses (``routing.zoneEgress``, mTLS on) and its ExternalServices; the
generation rules are ``kuma/xds/generate/zone_egress.py``.

It registers in the proxy index's selection slot under the keys of what it read, so it is
re-assembled only when one of them changes:

* ``mesh_key(mesh)`` for every mesh known (mTLS or ``routing`` turned on or off),
* ``EXTERNALS_KEY``: an ExternalService created, changed or deleted in any mesh,
* ``endpoints_key(mesh, service)`` for each service it carries (a Secret its TLS reads),
* ``kind_key("MeshTrafficPermission", mesh)`` for each mesh it carries (permissions).

A sidecar's change, a Dataplane's or any other policy's, never re-assembles it.
"""

from __future__ import annotations

from collections.abc import Hashable

from kuma.resources import ZoneEgress
from kuma.resources.model import SERVICE_TAG
from kuma.xds import types
from kuma.xds.generate.external import EXTERNAL_SERVICE_TAG, external_protocol
from kuma.xds.generate.via_egress import routes_through_egress
from kuma.xds.generate.zone_egress import EgressService, egress_permissions, generate_zone_egress

from .interner import Interner
from .mesh_state import Meshes
from .watches import ProxyResources
from .zone_ingress import IngressAssembly, endpoints_key, kind_key, mesh_key

#: Selection key of the egresses: any ExternalService changed (``handlers/external_service``).
EXTERNALS_KEY: Hashable = ("ExternalServices",)
MTP = "MeshTrafficPermission"


def egress_services(meshes: Meshes) -> tuple[list[EgressService], set[Hashable]]:
    """What this zone's egresses carry, in (mesh, service) order, and the keys read."""
    selections: set[Hashable] = {EXTERNALS_KEY}
    found: list[EgressService] = []
    for mesh in sorted(meshes.states(), key=lambda m: m.name):
        selections.add(mesh_key(mesh.name))
        if not routes_through_egress(mesh.mesh):
            continue
        selections.add(kind_key(MTP, mesh.name))
        policies = mesh.policies_by_kind().get(MTP, ())
        for service in sorted(mesh.externals.services()):
            selections.add(endpoints_key(mesh.name, service))
            endpoints = mesh.externals.endpoints(service)
            if not endpoints:
                continue  # its Secret is missing: left out, as for sidecars
            tags = {k: v for k, v in endpoints[0].tags if k != EXTERNAL_SERVICE_TAG}
            tags[SERVICE_TAG] = service
            found.append(
                EgressService(
                    mesh.name,
                    service,
                    external_protocol(endpoints),
                    endpoints,
                    egress_permissions(mesh.name, tags, policies),
                )
            )
    return found, selections


def assemble_zone_egress(egress: ZoneEgress, meshes: Meshes, interner: Interner) -> IngressAssembly:
    resources: ProxyResources = {types.CLUSTER: {}, types.ENDPOINT: {}, types.LISTENER: {}}
    services, selections = egress_services(meshes)
    listener, clusters = generate_zone_egress(egress, services)
    for cluster in clusters:
        resources[types.CLUSTER][cluster.name] = interner.intern(
            types.CLUSTER, cluster.name, cluster
        )
    if listener is not None:
        resources[types.LISTENER][listener.name] = interner.intern(
            types.LISTENER, listener.name, listener
        )
    return IngressAssembly(resources, frozenset(selections))
