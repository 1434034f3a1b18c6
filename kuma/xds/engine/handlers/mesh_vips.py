"""MeshVips events: the stored VIP allocation of a mesh (written by kuma/cp/vips.py)."""

from __future__ import annotations

from kuma.resources import MeshVips
from kuma.store import Operation, ResourceEvent

from ..invalidation import Invalidation
from ..mesh_state import Meshes


class MeshVipsHandler:
    resource_type = MeshVips.TYPE

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        resource = event.resource
        assert isinstance(resource, MeshVips)
        # A global resource named after its mesh.
        mesh = meshes[resource.name]
        if event.operation is Operation.DELETE:
            mesh.set_stored_vips({})
        else:
            mesh.set_stored_vips(resource.vips, resource.hosts)
        invalidation.vips.add(mesh.name)
