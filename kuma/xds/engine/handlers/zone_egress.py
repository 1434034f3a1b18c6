"""ZoneEgress events: where this zone's egresses listen, the endpoints of every external
service a mesh with ``routing.zoneEgress`` reaches through them (``generate/via_egress.py``).

Only this zone's egresses count (Kuma's ``localZone`` filter: a ZoneEgress of another zone, or
one stamped with no zone on a standalone control plane, is the zone's own when its zone is
this one or empty). A change of an egress's address touches the external services of every
mesh that has some: their consumers' ClusterLoadAssignments are rebuilt. Meshes not routing
through the egress are touched too (rare: egresses change seldom) so that a mesh turning
``zoneEgress`` on later never reads a ClusterLoadAssignment cached before the change. In a
mesh routing through the egress, the services other zones' ingresses list are touched as well
(their endpoints are the egresses); in the others they do not depend on egresses.
"""

from __future__ import annotations

from kuma.resources import ZoneEgress
from kuma.store import Operation, ResourceEvent
from kuma.xds.generate.via_egress import EgressAddress
from kuma.xds.node_id import ProxyId

from ..invalidation import Invalidation
from ..mesh_state import Meshes


class ZoneEgressHandler:
    resource_type = ZoneEgress.TYPE

    def __init__(self, zone: str = "") -> None:
        self._zone = zone

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        egress = event.resource
        assert isinstance(egress, ZoneEgress)
        # The egress terminates only ExternalServices reachable from this zone.
        meshes.cross_zone.zone = self._zone
        known = meshes.zone_egresses
        networking = egress.networking
        local = egress.zone in ("", self._zone)
        if event.operation is Operation.DELETE or not local or networking is None:
            address = None
        else:
            address = EgressAddress(networking.address, networking.port)
        before = set(known.values())
        proxies = meshes.zone_egress_proxies
        if address is None:
            known.pop(egress.name, None)
            removed = proxies.pop(egress.name, None)
        else:
            known[egress.name] = address
            removed = proxies.get(egress.name)
            proxies[egress.name] = egress
        if removed != proxies.get(egress.name):
            # The egress as a proxy (node id ``.<name>``): its listener's address and port.
            invalidation.dataplanes.add(ProxyId("", egress.name))
        if set(known.values()) == before:
            return  # the same addresses (a second egress on one address, a relabel)
        for mesh in meshes.states():
            services = mesh.externals.services()
            if services:
                invalidation.touch_services(mesh.name, services)
            if mesh.locality().egresses is not None:
                # Other zones' services are reached through the egresses too (cross_zone.py).
                invalidation.touch_services(mesh.name, mesh.remote_services())
