"""ZoneIngress events, for the ingress as a proxy of this control plane: its stored resource
(``Meshes.zone_ingresses``), whose change re-assembles that ingress (engine/zone_ingress.py).
Another handler of the same kind may use other zones' ingresses as endpoints."""

from __future__ import annotations

from kuma.resources import ZoneIngress
from kuma.store import Operation, ResourceEvent
from kuma.xds.node_id import ProxyId

from ..invalidation import Invalidation
from ..mesh_state import Meshes


class ZoneIngressProxyHandler:
    resource_type = ZoneIngress.TYPE

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        ingress = event.resource
        assert isinstance(ingress, ZoneIngress)
        held = meshes.zone_ingresses
        if event.operation is Operation.DELETE:
            if held.pop(ingress.name, None) is None:
                return
        elif held.get(ingress.name) == ingress:
            return  # the same content again
        else:
            held[ingress.name] = ingress
        # A zone proxy's node id has no mesh (Kuma's ``.<name>``).
        invalidation.dataplanes.add(ProxyId("", ingress.name))
