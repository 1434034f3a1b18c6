"""ExternalService events, and the Secret events their DataSources read.

Either changes the resolved endpoints of the services concerned (the ExternalService's old and
new ``kuma.io/service``; the services whose ExternalServices name the Secret): touched as
services, so exactly their consumers (the proxies with an outbound to them, the index's
consumers) are re-assembled (the service's shared inputs hold its external endpoints).
"""

from __future__ import annotations

from kuma.resources import ExternalService, Secret
from kuma.store import Operation, ResourceEvent

from ..invalidation import Invalidation
from ..mesh_state import Meshes
from ..zone_egress import EXTERNALS_KEY


class ExternalServiceHandler:
    resource_type = ExternalService.TYPE

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        resource = event.resource
        assert isinstance(resource, ExternalService)
        state = meshes[resource.mesh]
        externals = state.externals
        if event.operation is Operation.DELETE:
            touched = externals.remove(resource.name)
        elif externals.get(resource.name) == resource:
            return  # the same content again
        else:
            touched = externals.put(resource)
        # Its VIP outbounds, if any, are settled with the mesh's VIPs (inputs.py).
        state.externals_changed()
        invalidation.touch_services(resource.mesh, touched)
        invalidation.selections.add(EXTERNALS_KEY)  # the zone egresses carry them


class SecretHandler:
    """Mesh Secrets, as values an ExternalService's DataSource may name (the proxies'
    certificates are the SecretSource's business, not this)."""

    resource_type = Secret.TYPE

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        secret = event.resource
        assert isinstance(secret, Secret)
        value = None if event.operation is Operation.DELETE else secret.value
        touched = meshes[secret.mesh].externals.set_secret(secret.name, value)
        if touched:
            invalidation.touch_services(secret.mesh, touched)
