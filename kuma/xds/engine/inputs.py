"""The engine's inputs on their own: store events in, per-mesh state and an invalidation out.

:class:`EngineInputs` hands each event to the handler of its resource type (``handlers/``)
and, once a batch is handled, settles what the batch did to the VIPs proxies see. It knows
nothing of proxies: the engine (and kuma-load's baseline) decide what to rebuild from the
returned :class:`~.invalidation.Invalidation`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from kuma.resources import Dataplane
from kuma.store import ResourceEvent
from kuma.xds.generate.proxy import MeshView

from .handlers import HandlerRegistry, InputHandler, default_handlers
from .invalidation import Invalidation
from .mesh_state import IdentityReady, Meshes


class InputObserver(Protocol):
    """Derives state of its own from the engine's inputs (e.g. the zone's availableServices):
    sees each event once its handler applied it, then the end of the batch."""

    def observe(self, event: ResourceEvent, meshes: Meshes) -> None: ...

    def settled(self) -> None: ...


class EngineInputs:
    def __init__(
        self,
        handlers: Iterable[InputHandler] | None = None,
        identity_ready: IdentityReady | None = None,
    ) -> None:
        """``identity_ready``: see :class:`~.mesh_state.MeshState` (PERMISSIVE TLS readiness)."""
        self._handlers = HandlerRegistry(default_handlers() if handlers is None else handlers)
        self._meshes = Meshes(identity_ready)
        self._observers: list[InputObserver] = []

    def add_observer(self, observer: InputObserver) -> None:
        self._observers.append(observer)

    @property
    def meshes(self) -> Meshes:
        return self._meshes

    def mesh(self, name: str) -> MeshView:
        """What generation reads of one mesh (its Dataplanes, services, endpoints, VIPs)."""
        return self._meshes[name]

    def dataplane(self, mesh: str, name: str) -> Dataplane | None:
        state = self._meshes.get(mesh)
        return None if state is None else state.dataplanes.get(name)

    def apply(
        self, events: Iterable[ResourceEvent], invalidation: Invalidation | None = None
    ) -> tuple[Invalidation, int]:
        """Apply a batch; return what it invalidated and how many events it held.
        ``invalidation``: what derived inputs invalidated meanwhile, to add to.

        ``invalidation.vips`` ends as the meshes whose *visible* VIPs changed (the stored
        allocation of the services that exist), whatever the handlers noted as candidates."""
        if invalidation is None:
            invalidation = Invalidation()
        handlers, meshes = self._handlers, self._meshes
        count = 0
        for event in events:
            count += 1
            for handler in handlers.of(event.resource.TYPE):
                handler.handle(event, meshes, invalidation)
            for observer in self._observers:
                observer.observe(event, meshes)
        for observer in self._observers:
            observer.settled()
        candidates = invalidation.vips | invalidation.services.keys()
        invalidation.vips = {m for m in candidates if meshes[m].refresh_vips()}
        return invalidation, count
