"""The monitoring assignments of every scraped Dataplane, kept from the store's events.

A Dataplane event recomputes that Dataplane's assignment; a Mesh event recomputes the mesh's
Dataplanes only when the mesh's prometheus backend changed (the only part of a Mesh an
assignment reads). Each assignment is kept encoded; the version (a fresh UUID, as Kuma's
``SnapshotAutoVersioner``) changes only when some encoded assignment really changed, and
waiting fetches are woken then. A fetch whose version is current costs no work: it waits on
an event.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import anyio
import orjson
from anyio.abc import TaskStatus

from kuma import jsonbytes
from kuma.resources import Dataplane, Mesh
from kuma.resources.metrics import PrometheusConfig, enabled_prometheus
from kuma.store import Operation, ResourceEvent, Store, Synced

from .assignments import TYPE_URL, assignment_name, monitoring_assignment


class AssignmentIndex:
    def __init__(self) -> None:
        self._meshes: dict[str, Mesh] = {}
        self._backends: dict[str, PrometheusConfig | None] = {}
        self._dataplanes: dict[str, dict[str, Dataplane]] = {}
        #: name -> the assignment encoded as one element of ``resources``.
        self._encoded: dict[str, bytes] = {}
        self.version = str(uuid.uuid4())
        self._changed = anyio.Event()
        self._body: tuple[str, bytes] | None = None
        self._closed = False
        #: Fetches being held now (tests and diagnostics).
        self.waiting = 0
        #: How many assignments were built (tests: work follows what changed).
        self.computed = 0

    # -- keeping it current ------------------------------------------------------------------

    def apply(self, event: ResourceEvent) -> None:
        resource = event.resource
        deleted = event.operation is Operation.DELETE
        if isinstance(resource, Dataplane):
            mesh_dataplanes = self._dataplanes.setdefault(resource.mesh, {})
            if deleted:
                mesh_dataplanes.pop(resource.name, None)
                changed = self._set(assignment_name(resource), None)
            else:
                mesh_dataplanes[resource.name] = resource
                changed = self._compute(resource)
        elif isinstance(resource, Mesh):
            name = resource.name
            if deleted:
                self._meshes.pop(name, None)
            else:
                self._meshes[name] = resource
            backend = None if deleted else enabled_prometheus(resource)
            if name in self._backends and self._backends[name] == backend:
                return
            self._backends[name] = backend
            changed = False
            for dataplane in self._dataplanes.get(name, {}).values():
                changed = self._compute(dataplane) or changed
        else:
            return
        if changed:
            self._bump()

    def _compute(self, dataplane: Dataplane) -> bool:
        if self._backends.get(dataplane.mesh) is None:
            # No prometheus backend on its mesh (most meshes): nothing to build.
            return self._set(assignment_name(dataplane), None)
        self.computed += 1
        document = monitoring_assignment(self._meshes.get(dataplane.mesh), dataplane)
        encoded = None if document is None else jsonbytes.dumps(document)  # kept per proxy
        return self._set(assignment_name(dataplane), encoded)

    def _set(self, name: str, encoded: bytes | None) -> bool:
        if encoded is None:
            return self._encoded.pop(name, None) is not None
        if self._encoded.get(name) == encoded:
            return False
        self._encoded[name] = encoded
        return True

    def _bump(self) -> None:
        self.version = str(uuid.uuid4())
        self._body = None
        self._changed.set()
        self._changed = anyio.Event()

    async def run(self, store: Store, *, task_status: TaskStatus[None]) -> None:
        """Follow ``store``; ``task_status.started()`` once its current state is in."""
        async with store.watch() as events:
            async for item in events:
                if isinstance(item, Synced):
                    task_status.started()
                    task_status = anyio.TASK_STATUS_IGNORED
                else:
                    self.apply(item)

    # -- answering ---------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return sorted(self._encoded)

    def response(self, names: Iterable[str] = ()) -> bytes:
        """The DiscoveryResponse (protobuf JSON, proto field names as Kuma's ``jsonpb``):
        every assignment, or only those named, in name order."""
        wanted = set(names)
        if not wanted and self._body is not None and self._body[0] == self.version:
            return self._body[1]
        chosen = [self._encoded[n] for n in sorted(self._encoded) if not wanted or n in wanted]
        # Built from the encoded pieces; jsonpb leaves an empty ``resources`` out.
        parts = [orjson.dumps({"version_info": self.version})[:-1]]
        if chosen:
            parts += [b',"resources":[', b",".join(chosen), b"]"]
        parts.append(b',"type_url":' + orjson.dumps(TYPE_URL) + b"}")
        body = b"".join(parts)
        if not wanted:
            self._body = (self.version, body)
        return body

    def close(self) -> None:
        """Release every held fetch (kuma-cp is stopping): they end as "not modified" instead
        of holding the server's shutdown for their whole timeout."""
        self._closed = True
        self._changed.set()

    async def wait_for_change(self, version: str, hold: float) -> bool:
        """Hold until the version differs from ``version`` (True) or ``hold`` seconds pass
        (False). Returns at once when it already differs."""
        if version != self.version:
            return True
        if self._closed:
            return False
        changed = self._changed
        self.waiting += 1
        try:
            with anyio.move_on_after(hold):
                await changed.wait()
        finally:
            self.waiting -= 1
        return version != self.version
