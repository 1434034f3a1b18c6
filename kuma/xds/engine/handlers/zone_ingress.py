"""ZoneIngress events: other zones' ingresses become endpoints of the services they list, in
every mesh's index, kept incrementally (the rules are ``kuma/xds/generate/cross_zone.py``;
``remote_endpoints`` there computes the same from scratch).

A change re-indexes only the address:port of the ingress before and after it, and touches only
the (mesh, service) entries whose endpoints changed: the engine then re-sends those services'
ClusterLoadAssignments to their consumers. Only when the number of remote address:port pairs
that list services changes do local endpoints change weight, and every indexed service of
every mesh is touched (an ingress appearing or going away, rare).
"""

from __future__ import annotations

from kuma.resources import ZoneIngress
from kuma.store import Operation, ResourceEvent
from kuma.xds.generate.cross_zone import Contribution, Coordinates, contribution, remote_coordinates

from ..invalidation import Invalidation
from ..mesh_state import Meshes
from ..zone_egress import remote_key


class ZoneIngressHandler:
    resource_type = ZoneIngress.TYPE

    def __init__(self, zone: str = "") -> None:
        #: The local zone: its own ingresses (and those without a zone) are not endpoints here.
        self.zone = zone
        #: Remote ingresses with a public address, by name.
        self._ingresses: dict[str, ZoneIngress] = {}
        #: Public address → names of the remote ingresses behind it.
        self._at: dict[Coordinates, set[str]] = {}
        #: Public address → what its serving ingress (the first by name listing services)
        #: contributes; present only while one does (their number weighs local endpoints).
        self._served: dict[Coordinates, Contribution] = {}

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        ingress = event.resource
        assert isinstance(ingress, ZoneIngress)
        meshes.cross_zone.zone = self.zone
        old = self._ingresses.pop(ingress.name, None)
        at = None
        if event.operation is not Operation.DELETE:
            at = remote_coordinates(ingress, self.zone)
        if at is not None:
            self._ingresses[ingress.name] = ingress
            if old == ingress:
                return  # the same content again
            self._at.setdefault(at, set()).add(ingress.name)
        old_at = None if old is None else remote_coordinates(old, self.zone)
        if old_at is not None and old_at != at:
            names = self._at[old_at]
            names.discard(ingress.name)
            if not names:
                del self._at[old_at]
        serving_before = len(self._served)
        for coordinates in {c for c in (old_at, at) if c is not None}:
            self._serve(coordinates, meshes, invalidation)
        meshes.cross_zone.instances = len(self._served)
        if len(self._served) != serving_before:
            for mesh in list(meshes.states()):
                invalidation.touch_services(mesh.name, mesh.indexed_services())

    def _serve(self, at: Coordinates, meshes: Meshes, invalidation: Invalidation) -> None:
        """Re-index what the ingress serving ``at`` contributes."""
        listing = [n for n in self._at.get(at, ()) if self._ingresses[n].available_services]
        new: Contribution = contribution(self._ingresses[min(listing)], at) if listing else {}
        old = self._served.pop(at, {})
        if listing:
            self._served[at] = new
        for mesh_name, service in old.keys() | new.keys():
            endpoints = new.get((mesh_name, service), ())
            if meshes[mesh_name].put_remote(service, at, endpoints):
                invalidation.touch_services(mesh_name, (service,))
                # This zone's egresses lead to what other zones list (engine/zone_egress.py).
                invalidation.selections.add(remote_key(mesh_name))
