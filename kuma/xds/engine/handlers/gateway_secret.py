"""Secret events as the certificates of builtin gateways' HTTPS and TLS listeners read them:
the gateway proxies that read the Secret (its selection key, noted when they were assembled)
are re-assembled. The value itself is kept once per mesh (``ExternalServices.secret``, fed by
``SecretHandler``, registered before this one)."""

from __future__ import annotations

from kuma.resources import Secret
from kuma.store import ResourceEvent
from kuma.xds.gateway.selection import secret_key

from ..invalidation import Invalidation
from ..mesh_state import Meshes


class GatewaySecretHandler:
    resource_type = Secret.TYPE

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        secret = event.resource
        assert isinstance(secret, Secret)
        invalidation.selections.add(secret_key(secret.mesh, secret.name))
