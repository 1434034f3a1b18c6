"""Input handlers by resource type: adding a resource kind to the engine is adding a module
here (see base.py for the shape) and one line in :func:`default_handlers`."""

from __future__ import annotations

from collections.abc import Iterable

from kuma.resources.policy import POLICY_KINDS

from .base import InputHandler
from .dataplane import DataplaneHandler
from .external_service import ExternalServiceHandler, SecretHandler
from .mesh import MeshHandler
from .mesh_gateway import MeshGatewayHandler
from .mesh_vips import MeshVipsHandler
from .policy import PolicyHandler
from .zone_egress import ZoneEgressHandler


def default_handlers(*, zone: str = "") -> list[InputHandler]:
    """``zone``: a zone control plane's name, stamped on the Dataplanes it serves."""
    policies = [PolicyHandler(kind) for kind in sorted(POLICY_KINDS)]
    externals: list[InputHandler] = [ExternalServiceHandler(), SecretHandler()]
    externals.append(MeshGatewayHandler())
    externals.append(ZoneEgressHandler(zone))
    return [DataplaneHandler(zone), MeshHandler(), MeshVipsHandler(), *externals, *policies]


class HandlerRegistry:
    """One handler per resource type; events of a type nobody handles are ignored."""

    def __init__(self, handlers: Iterable[InputHandler] = ()) -> None:
        self._by_type: dict[str, InputHandler] = {}
        for handler in handlers:
            self.register(handler)

    def register(self, handler: InputHandler) -> None:
        kind = handler.resource_type
        if kind in self._by_type:
            raise ValueError(f"a handler for {kind} is already registered")
        self._by_type[kind] = handler

    def get(self, resource_type: str) -> InputHandler | None:
        return self._by_type.get(resource_type)

    @property
    def resource_types(self) -> frozenset[str]:
        return frozenset(self._by_type)


__all__ = ["HandlerRegistry", "InputHandler", "default_handlers"]
