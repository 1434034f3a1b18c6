"""Mesh events: mesh-wide settings (passthrough today; mTLS next) reach every proxy of it."""

from __future__ import annotations

from kuma.resources import Mesh
from kuma.store import Operation, ResourceEvent

from ..invalidation import Invalidation
from ..mesh_state import Meshes


class MeshHandler:
    resource_type = Mesh.TYPE

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        resource = event.resource
        assert isinstance(resource, Mesh)
        mesh = meshes[resource.name]
        mesh.mesh = None if event.operation is Operation.DELETE else resource
        invalidation.meshes.add(mesh.name)
