"""What the GUI shows of the store, kept in memory from the store's own watch.

The GUI reads every page from here, never from the store: a page of 50 Dataplanes out of 10,000
is a slice of a sorted dict, the same on every store (an etcd store would otherwise be read in
full for each filtered page), and the watch that fills it is also what makes pages live: each
change after the initial snapshot is handed to ``on_change``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio
from anyio.abc import TaskStatus
from sortedcontainers import SortedDict

from kuma.resources import Dataplane, Mesh, StoredResource, ZoneEgress, ZoneIngress
from kuma.resources.model import Policy
from kuma.store import Operation, ResourceEvent, Store, Synced


class GuiCatalog:
    def __init__(self, on_change: Callable[[ResourceEvent], None] | None = None) -> None:
        self.on_change = on_change
        self._meshes: SortedDict[str, StoredResource] = SortedDict()
        #: mesh -> name -> Dataplane, both sorted (the order of the REST API's lists).
        self._dataplanes: dict[str, SortedDict[str, StoredResource]] = {}
        #: ZoneIngress and ZoneEgress by name (counted on the overview).
        self._zone_proxies: dict[str, dict[str, StoredResource]] = {
            ZoneIngress.TYPE: {},
            ZoneEgress.TYPE: {},
        }
        #: mesh -> policy kind (MeshTimeout, ...) -> names.
        self._policies: dict[str, dict[str, SortedDict[str, StoredResource]]] = {}
        self.synced = False

    # --- reads ---------------------------------------------------------------------------------

    def meshes(self) -> Sequence[StoredResource]:
        return list(self._meshes.values())

    def mesh(self, name: str) -> StoredResource | None:
        stored: StoredResource | None = self._meshes.get(name)
        return stored

    def mesh_names(self) -> list[str]:
        """Meshes that exist, and meshes that only hold Dataplanes (their Mesh was deleted)."""
        return sorted(set(self._meshes) | {m for m, dps in self._dataplanes.items() if dps})

    def dataplanes(self, mesh: str) -> Sequence[StoredResource]:
        """The mesh's Dataplanes ordered by name (a view: do not keep it across awaits)."""
        by_name = self._dataplanes.get(mesh)
        return by_name.values() if by_name is not None else ()

    def dataplane(self, mesh: str, name: str) -> StoredResource | None:
        by_name = self._dataplanes.get(mesh)
        return None if by_name is None else by_name.get(name)

    def policies(self, mesh: str) -> dict[str, list[str]]:
        """The mesh's policies: kind -> names, both sorted."""
        kinds = self._policies.get(mesh, {})
        return {kind: list(kinds[kind]) for kind in sorted(kinds) if kinds[kind]}

    def zone_proxies(self, type: str) -> int:
        """How many ZoneIngresses or ZoneEgresses exist."""
        return len(self._zone_proxies[type])

    # --- filling -------------------------------------------------------------------------------

    def apply(self, event: ResourceEvent) -> None:
        resource = event.resource
        deleted = event.operation is Operation.DELETE
        stored = StoredResource(resource, event.meta)
        if isinstance(resource, Mesh):
            if deleted:
                self._meshes.pop(resource.name, None)
            else:
                self._meshes[resource.name] = stored
        elif isinstance(resource, Dataplane):
            by_name = self._dataplanes.get(resource.mesh)
            if by_name is None:
                by_name = self._dataplanes[resource.mesh] = SortedDict()
            if deleted:
                by_name.pop(resource.name, None)
            else:
                by_name[resource.name] = stored
        elif isinstance(resource, Policy):
            kinds = self._policies.setdefault(resource.mesh, {})
            names = kinds.setdefault(resource.TYPE, SortedDict())
            if deleted:
                names.pop(resource.name, None)
            else:
                names[resource.name] = stored
        elif isinstance(resource, ZoneIngress | ZoneEgress):
            zone_proxies = self._zone_proxies[resource.TYPE]
            if deleted:
                zone_proxies.pop(resource.name, None)
            else:
                zone_proxies[resource.name] = stored

    async def run(
        self, store: Store, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Follow ``store`` until cancelled (or until the store closes its watches); started once
        the initial snapshot is held."""
        async with store.watch() as events:
            async for item in events:
                if isinstance(item, Synced):
                    if not self.synced:
                        self.synced = True
                        task_status.started()
                    continue
                self.apply(item)
                if self.synced and self.on_change is not None:
                    self.on_change(item)
