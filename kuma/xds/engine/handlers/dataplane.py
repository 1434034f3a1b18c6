"""Dataplane events: the mesh's service index, and the proxy's own configuration."""

from __future__ import annotations

from kuma.multizone import stamp_zone
from kuma.resources import Dataplane
from kuma.store import Operation, ResourceEvent
from kuma.xds.node_id import ProxyId

from ..invalidation import Invalidation
from ..mesh_state import Meshes


class DataplaneHandler:
    resource_type = Dataplane.TYPE

    def __init__(self, zone: str = "") -> None:
        #: A zone control plane's name: every Dataplane is served with ``kuma.io/zone: <zone>``
        #: whatever the store holds (kuma/multizone/zone_tag.py); empty: served as stored.
        self.zone = zone

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        dataplane = event.resource
        assert isinstance(dataplane, Dataplane)
        dataplane = stamp_zone(dataplane, self.zone, strict=False)
        mesh = meshes[dataplane.mesh]
        if event.operation is Operation.DELETE:
            services = mesh.remove(dataplane.name)
        elif mesh.dataplanes.get(dataplane.name) == dataplane:
            return  # the same content again (a re-put): nothing changed
        else:
            services = mesh.put(dataplane)
        invalidation.touch_services(mesh.name, services)
        invalidation.dataplanes.add(ProxyId(mesh.name, dataplane.name))
