"""The shape of an input handler: one resource kind's events in, an invalidation out.

A handler updates the engine's inputs (the per-mesh state, or state of its own) and says what
the change invalidates, by *reason*, in the batch's :class:`~..invalidation.Invalidation`;
it never looks at proxies. The engine asks the proxy index which connected proxies each reason
touches, after every event of the batch is handled (so a create-then-delete in one batch costs
one re-assembly, or none).

Shapes of the kinds to come:

* a policy (``MeshTimeout``, ``MeshTrafficPermission``, ...): keep the policies by mesh in the
  handler; on a change add the policy's key (e.g. ``(TYPE, mesh, name)``) to ``selections``:
  the proxies it selected before (the index's selection slot, filled from
  ``Assembly.selections`` when a proxy is assembled). For the proxies it selects afterwards,
  add what its ``targetRef`` names: ``meshes`` for ``kind: Mesh``, ``dataplanes`` for the
  Dataplanes it matches (``kind: MeshService``/``MeshSubset`` match within one mesh).
* a proxy's certificates: not an engine input. They feed the
  :class:`~kuma.xds.secrets.SecretSource`, which owns the SDS type URL and notifies its own
  watches (see ``kuma/xds/composite.py``). A mesh Secret is an input only as the value an
  ExternalService's DataSource names (``external_service.py``).
* a ZoneIngress (``zone_ingress.py``): another zone's ingress adds endpoints to the services
  it makes reachable, per mesh, with ``touch_services`` (their endpoints change, like a
  Dataplane's).
"""

from __future__ import annotations

from typing import Protocol

from kuma.store import ResourceEvent

from ..invalidation import Invalidation
from ..mesh_state import Meshes


class InputHandler(Protocol):
    @property
    def resource_type(self) -> str:
        """The ``Resource.TYPE`` this handler follows (one handler per type)."""
        ...

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        """Apply one event to the inputs and record what it invalidated."""
        ...
