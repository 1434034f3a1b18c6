"""ZoneIngress events: the services other zones' ingresses list exist in their mesh here, for
transparent proxies (a VIP outbound and a ``.mesh`` name), even with no local member. Kuma's
VIP allocator takes remote ingresses' ``availableServices`` the same way (kuma/cp/vips.py
allocates; ``cross_zone.listed_services`` is the rule).

Kept incrementally: an ingress's change counts again only the (mesh, service) pairs it lists
before or after, and marks a mesh's VIPs for refresh only where a service appeared in or
vanished from it; an instances or tags change, the common update, costs no VIP work.
Endpoints are the other ZoneIngress handler's (``zone_ingress.py``).
"""

from __future__ import annotations

from kuma.resources import ZoneIngress
from kuma.store import Operation, ResourceEvent
from kuma.xds.generate.cross_zone import listed_services

from ..invalidation import Invalidation
from ..mesh_state import Meshes


class RemoteServicesHandler:
    resource_type = ZoneIngress.TYPE

    def __init__(self, zone: str = "") -> None:
        #: The local zone: its own ingresses list nothing new.
        self.zone = zone
        #: Remote ingress name → the (mesh, service) pairs it lists.
        self._listed: dict[str, frozenset[tuple[str, str]]] = {}

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        ingress = event.resource
        assert isinstance(ingress, ZoneIngress)
        old = self._listed.pop(ingress.name, frozenset())
        new = (
            frozenset()
            if event.operation is Operation.DELETE
            else listed_services(ingress, self.zone)
        )
        if new:
            self._listed[ingress.name] = new
        for mesh_name, service in old ^ new:
            meshes[mesh_name].list_remote(service, (mesh_name, service) in new)
            # The engine refreshes the mesh's visible VIPs; only a real change re-assembles.
            invalidation.vips.add(mesh_name)
