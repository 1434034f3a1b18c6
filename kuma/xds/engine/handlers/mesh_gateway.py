"""MeshGateway events: the mesh's MeshGateways (kuma/xds/gateway), and the builtin gateway
proxies a change concerns: those it served when they were last assembled (its selection
key) and those its new selectors match."""

from __future__ import annotations

from kuma.resources import MeshGateway
from kuma.store import Operation, ResourceEvent
from kuma.xds.gateway.selection import gateway_key, served_by
from kuma.xds.node_id import ProxyId

from ..invalidation import Invalidation
from ..mesh_state import Meshes


class MeshGatewayHandler:
    resource_type = MeshGateway.TYPE

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        gateway = event.resource
        assert isinstance(gateway, MeshGateway)
        mesh = meshes[gateway.mesh]
        if event.operation is Operation.DELETE:
            mesh.gateways.pop(gateway.name, None)
        elif mesh.gateways.get(gateway.name) == gateway:
            return
        else:
            mesh.gateways[gateway.name] = gateway
            for name in served_by(gateway, mesh):
                invalidation.dataplanes.add(ProxyId(mesh.name, name))
        invalidation.selections.add(gateway_key(mesh.name, gateway.name))
