"""Input handlers by resource type: adding a resource kind to the engine is adding a module
here (see base.py for the shape) and one line in :func:`default_handlers`."""

from __future__ import annotations

from collections.abc import Iterable

from kuma.policies.egress import egress_kinds
from kuma.resources.policy import POLICY_KINDS

from .base import InputHandler
from .dataplane import DataplaneHandler
from .egress_policy import EgressPolicyHandler
from .external_service import ExternalServiceHandler, SecretHandler
from .gateway_secret import GatewaySecretHandler
from .mesh import MeshHandler
from .mesh_gateway import MeshGatewayHandler
from .mesh_vips import MeshVipsHandler
from .policy import PolicyHandler
from .remote_services import RemoteServicesHandler
from .zone_egress import ZoneEgressHandler
from .zone_ingress import ZoneIngressHandler
from .zone_ingress_proxy import ZoneIngressProxyHandler


def default_handlers(*, zone: str = "") -> list[InputHandler]:
    """``zone``: a zone control plane's name, stamped on the Dataplanes it serves (its own
    ZoneIngresses are not endpoints of its proxies; other zones' are)."""
    # A policy a ZoneEgress applies is looked at first (before the mesh holds its new version).
    policies: list[InputHandler] = [EgressPolicyHandler(k) for k in sorted(egress_kinds())]
    policies.extend(PolicyHandler(kind) for kind in sorted(POLICY_KINDS))
    externals: list[InputHandler] = [ExternalServiceHandler(), SecretHandler()]
    externals.append(MeshGatewayHandler())
    externals.append(GatewaySecretHandler())
    externals.append(ZoneEgressHandler(zone))
    # A ZoneIngress is a proxy of this zone, and other zones' are endpoints and services.
    proxies: list[InputHandler] = [ZoneIngressProxyHandler(), ZoneIngressHandler(zone)]
    proxies.append(RemoteServicesHandler(zone))
    return [
        DataplaneHandler(zone),
        MeshHandler(),
        MeshVipsHandler(),
        *externals,
        *proxies,
        *policies,
    ]


class HandlerRegistry:
    """The handlers of each resource type, in registration order (a kind may feed several
    inputs: a ZoneIngress is a proxy here and, from other zones, endpoints); one handler of a
    class per type. Events of a type nobody handles are ignored."""

    def __init__(self, handlers: Iterable[InputHandler] = ()) -> None:
        self._by_type: dict[str, tuple[InputHandler, ...]] = {}
        for handler in handlers:
            self.register(handler)

    def register(self, handler: InputHandler) -> None:
        kind = handler.resource_type
        present = self._by_type.get(kind, ())
        if any(type(h) is type(handler) for h in present):
            raise ValueError(f"a {type(handler).__name__} for {kind} is already registered")
        self._by_type[kind] = (*present, handler)

    def of(self, resource_type: str) -> tuple[InputHandler, ...]:
        return self._by_type.get(resource_type, ())

    @property
    def resource_types(self) -> frozenset[str]:
        return frozenset(self._by_type)


__all__ = ["HandlerRegistry", "InputHandler", "default_handlers"]
