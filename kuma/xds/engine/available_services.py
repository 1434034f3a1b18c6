"""The zone's ``availableServices``, kept incrementally from the engine's inputs.

An observer of the engine's inputs (:meth:`EngineInputs.add_observer`): it sees every store
event right after its handler applied it, in the engine's order, and reads the Dataplane as
the engine holds it (``kuma.io/zone`` stamped). A Dataplane event changes the counts of the
tag sets of that Dataplane's healthy inbounds only: O(its inbounds), whatever the zone's size
(Kuma recomputes the whole list from every Dataplane every second). An entry's object is
rebuilt only when its count changes; the list, in Kuma's order, is assembled when asked for
and cached until the next change. The rules are Kuma's (kuma/multizone/available_services.py,
whose ``from_scratch`` tests compare with).

It also follows the zone's own ZoneIngresses (with the store version each was last seen at,
in the same order as the Dataplanes: a write based on that version carries every event up to
it) so the writer (kuma/cp/ingress_services.py) can tell which ingresses hold a stale list.
``on_change`` is called at the end of a batch that changed the list or a local ingress.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable

from kuma.multizone.available_services import (
    TagSet,
    carries_list,
    egress_routing,
    healthy_tag_sets,
    kuma_order,
    lists_external,
)
from kuma.resources import Dataplane, ExternalService, Mesh, ZoneIngress
from kuma.resources.model import AvailableService
from kuma.store import Operation, ResourceEvent

from .mesh_state import Meshes

#: (external, mesh, Kuma's tag string, tags): the position of an entry in Kuma's order.
_Key = tuple[bool, str, str, TagSet]


class LocalIngress:
    """A ZoneIngress this zone keeps the list of, as last seen in the engine's order."""

    __slots__ = ("resource", "version")

    def __init__(self, resource: ZoneIngress, version: str) -> None:
        self.resource = resource
        self.version = version


class AvailableServicesIndex:
    """Counts of tag sets per mesh, the entries built from them, and the local ingresses."""

    def __init__(self, zone: str = "", on_change: Callable[[], None] | None = None) -> None:
        self.zone = zone
        self.on_change = on_change
        #: (mesh, Dataplane name) → tag sets of its healthy inbounds (interned).
        self._contributed: dict[tuple[str, str], tuple[TagSet, ...]] = {}
        #: (mesh, ExternalService name) → its tag set, if this zone's ingress lists it.
        self._external: dict[tuple[str, str], TagSet] = {}
        self._counts: Counter[tuple[bool, str, TagSet]] = Counter()
        #: Meshes that exist, and those whose ExternalServices are listed (routing.zoneEgress).
        self._meshes: set[str] = set()
        self._egress: set[str] = set()
        #: Entry key → its object; the keys of existing meshes in Kuma's order.
        self._objects: dict[tuple[bool, str, TagSet], AvailableService] = {}
        self._order: list[_Key] = []
        self._by_order: dict[_Key, tuple[bool, str, TagSet]] = {}
        self._entries: tuple[AvailableService, ...] | None = ()
        self._interned: dict[TagSet, TagSet] = {}
        self.ingresses: dict[str, LocalIngress] = {}
        self._changed = False

    # --- what readers see -------------------------------------------------------------------

    def entries(self) -> tuple[AvailableService, ...]:
        """The zone's list, in Kuma's order (the same tuple until the next change)."""
        if self._entries is None:
            objects, by_order = self._objects, self._by_order
            self._entries = tuple(objects[by_order[key]] for key in self._order)
        return self._entries

    def stale(self) -> list[LocalIngress]:
        """The local ingresses whose stored list differs from :meth:`entries`."""
        current = self.entries()
        return [i for i in self.ingresses.values() if i.resource.available_services != current]

    # --- engine hook --------------------------------------------------------------------------

    def observe(self, event: ResourceEvent, meshes: Meshes) -> None:
        resource = event.resource
        deleted = event.operation is Operation.DELETE
        if isinstance(resource, Dataplane):
            held = None if deleted else meshes[resource.mesh].dataplanes.get(resource.name)
            self._dataplane(resource.mesh, resource.name, held)
        elif isinstance(resource, ExternalService):
            self._external_service(resource, deleted)
        elif isinstance(resource, Mesh):
            self._mesh(resource, deleted)
        elif isinstance(resource, ZoneIngress):
            self._ingress(event, deleted)

    def settled(self) -> None:
        """End of the engine's batch: tell the writer once if anything changed."""
        if self._changed:
            self._changed = False
            if self.on_change is not None:
                self.on_change()

    # --- inputs -------------------------------------------------------------------------------

    def _dataplane(self, mesh: str, name: str, dataplane: Dataplane | None) -> None:
        key = (mesh, name)
        old = self._contributed.pop(key, ())
        new: tuple[TagSet, ...] = ()
        if dataplane is not None:
            intern = self._interned.setdefault
            new = tuple(intern(t, t) for t in healthy_tag_sets(dataplane))
            if new:
                self._contributed[key] = new
        if old == new:
            return
        for tags in old:
            self._count(False, mesh, tags, -1)
        for tags in new:
            self._count(False, mesh, tags, +1)

    def _external_service(self, service: ExternalService, deleted: bool) -> None:
        key = (service.mesh, service.name)
        old = self._external.pop(key, None)
        new = None
        if not deleted and lists_external(service, self.zone):
            new = self._external[key] = tuple(sorted(service.tags.items()))
        if old == new:
            return
        if old is not None:
            self._count(True, service.mesh, old, -1)
        if new is not None:
            self._count(True, service.mesh, new, +1)

    def _mesh(self, mesh: Mesh, deleted: bool) -> None:
        exists = not deleted
        egress = exists and egress_routing(mesh)
        if (mesh.name in self._meshes) == exists and (mesh.name in self._egress) == egress:
            return
        self._meshes.discard(mesh.name)
        self._egress.discard(mesh.name)
        if exists:
            self._meshes.add(mesh.name)
        if egress:
            self._egress.add(mesh.name)
        # A mesh appearing or going (rare): its entries enter or leave the order.
        for entry in [k for k in self._objects if k[1] == mesh.name]:
            self._place(entry)

    def _ingress(self, event: ResourceEvent, deleted: bool) -> None:
        ingress = event.resource
        assert isinstance(ingress, ZoneIngress)
        if deleted or not carries_list(ingress, self.zone):
            if self.ingresses.pop(ingress.name, None) is None:
                return
        else:
            self.ingresses[ingress.name] = LocalIngress(ingress, event.meta.version)
        self._changed = True

    # --- counts and order -----------------------------------------------------------------

    def _count(self, external: bool, mesh: str, tags: TagSet, delta: int) -> None:
        entry = (external, mesh, tags)
        n = self._counts[entry] + delta
        if n > 0:
            self._counts[entry] = n
            self._objects[entry] = AvailableService(
                tags=dict(tags), instances=n, mesh=mesh, external_service=external
            )
        else:
            del self._counts[entry]
            self._objects.pop(entry, None)
        self._place(entry)

    def _place(self, entry: tuple[bool, str, TagSet]) -> None:
        """Put ``entry`` in the order, or take it out, as its count and mesh say."""
        external, mesh, tags = entry
        key: _Key = (external, *kuma_order(mesh, tags), tags)
        listed = entry in self._objects and mesh in (self._egress if external else self._meshes)
        at = bisect.bisect_left(self._order, key)
        present = at < len(self._order) and self._order[at] == key
        if listed and not present:
            self._order.insert(at, key)
            self._by_order[key] = entry
        elif present and not listed:
            del self._order[at]
            del self._by_order[key]
        elif not listed:
            return  # not visible (its mesh does not exist, or lists no ExternalServices)
        self._entries = None
        self._changed = True
