"""Which connected proxies an invalidation touches, answered from indexes, never by a scan.

Four ways in: by mesh (a mesh-wide input changed), by consumed (mesh, service) (a service's
shared resources changed), by own Dataplane (node id), and a selection slot: any hashable key
(e.g. ``("MeshTimeout", mesh, name)``) → the proxies it selects, kept up to date by whoever
assembles a proxy (``set_selections``), so a policy change finds its proxies without matching
every proxy again. There is deliberately no way to iterate all proxies of all meshes.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Set

from kuma.xds.node_id import format_node_id

from .watches import ProxyRecord

_NONE: frozenset[str] = frozenset()


class ProxyIndex:
    def __init__(self) -> None:
        self._records: dict[str, ProxyRecord] = {}
        self._by_mesh: dict[str, dict[str, ProxyRecord]] = {}
        #: (mesh, service) → node ids of connected proxies that hold the service's resources.
        self._consumers: dict[tuple[str, str], set[str]] = {}
        #: selection key → node ids of the connected proxies it selects.
        self._selected: dict[Hashable, set[str]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def get(self, node_id: str) -> ProxyRecord | None:
        return self._records.get(node_id)

    def of_dataplane(self, mesh: str, name: str) -> ProxyRecord | None:
        """The connected proxy whose own Dataplane is ``mesh``/``name``, if any."""
        return self._records.get(format_node_id(mesh, name))

    def in_mesh(self, mesh: str) -> Collection[ProxyRecord]:
        """The connected proxies of one mesh (a live view: copy before changing the index)."""
        by_name = self._by_mesh.get(mesh)
        return () if by_name is None else by_name.values()

    def consumers(self, mesh: str, service: str) -> Set[str]:
        """Node ids of the connected proxies that consume ``service`` (a live view)."""
        return self._consumers.get((mesh, service), _NONE)

    def selected_by(self, key: Hashable) -> Set[str]:
        """Node ids of the connected proxies selected by ``key`` (a live view)."""
        return self._selected.get(key, _NONE)

    @property
    def consumer_entries(self) -> int:
        return len(self._consumers)

    # --- updates ---------------------------------------------------------------------------

    def add(self, record: ProxyRecord) -> None:
        self._records[record.node_id] = record
        self._by_mesh.setdefault(record.mesh, {})[record.node_id] = record

    def remove(self, record: ProxyRecord) -> None:
        if self._records.get(record.node_id) is not record:
            return
        del self._records[record.node_id]
        by_name = self._by_mesh[record.mesh]
        del by_name[record.node_id]
        if not by_name:
            del self._by_mesh[record.mesh]
        self.set_consumed(record, ())
        self.set_selections(record, ())

    def set_consumed(self, record: ProxyRecord, services: Iterable[str]) -> None:
        """Record the services ``record`` now consumes (its outbound services)."""
        new = frozenset(services)
        old = frozenset(record.outbound_services)
        for service in old - new:
            key = (record.mesh, service)
            consumers = self._consumers.get(key)
            if consumers is not None:
                consumers.discard(record.node_id)
                if not consumers:
                    del self._consumers[key]
        for service in new - old:
            self._consumers.setdefault((record.mesh, service), set()).add(record.node_id)
        record.outbound_services = tuple(new)

    def set_selections(self, record: ProxyRecord, keys: Iterable[Hashable]) -> None:
        """Record the selection keys (e.g. policies) that select ``record`` now."""
        new = frozenset(keys)
        old = frozenset(record.selections)
        for key in old - new:
            selected = self._selected.get(key)
            if selected is not None:
                selected.discard(record.node_id)
                if not selected:
                    del self._selected[key]
        for key in new - old:
            self._selected.setdefault(key, set()).add(record.node_id)
        record.selections = tuple(new)
