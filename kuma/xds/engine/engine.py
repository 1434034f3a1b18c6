"""The incremental diff engine: store events in, per-proxy changed (type, name) sets out.

Per batch of events it
1. updates the mesh indexes (Dataplanes, service → endpoints, the stored VIPs) and learns which
   services the batch touched;
2. rebuilds each touched service's shared Cluster and ClusterLoadAssignment once;
3. re-assembles only the proxies whose own inputs changed (their Dataplane, the protocol of a
   service they use, the VIPs of a transparent-proxy mesh), and patches the new
   ClusterLoadAssignment into every other consumer of a touched service;
4. tells each affected proxy's streams which (type, name) pairs changed.
Nothing runs when nothing changes. Only proxies with a connected stream are assembled.

Heavy loops yield to the event loop every ``chunk`` proxies so streams keep sending and
receiving ACKs while a large change is processed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import msgspec

from kuma.resources import Dataplane, Mesh, MeshVips
from kuma.store import Operation, ResourceEvent, Store, Synced, WatchItem
from kuma.xds.generate import types
from kuma.xds.generate.clusters import service_cluster
from kuma.xds.generate.endpoints import load_assignment
from kuma.xds.snapshot import VersionedResource

from .assemble import assemble
from .interner import Interner
from .mesh_state import MeshState
from .subscription import ProxyRecord, Subscription

log = logging.getLogger("kuma.xds.engine")


class BatchStats(msgspec.Struct):
    events: int = 0
    services_touched: int = 0
    proxies_assembled: int = 0
    proxies_notified: int = 0
    seconds: float = 0.0


def parse_node_id(node_id: str) -> tuple[str, str]:
    """``<mesh>.<name>`` → (mesh, name). Mesh names hold no dot, Dataplane names may."""
    mesh, dot, name = node_id.partition(".")
    if not dot or not mesh or not name:
        raise ValueError(f"node id {node_id!r} is not <mesh>.<name>")
    return mesh, name


class Engine:
    def __init__(
        self,
        *,
        default_admin_port: int = 9901,
        chunk: int = 256,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self.default_admin_port = default_admin_port
        self.chunk = chunk
        #: Called with each batch's stats once it is applied (metrics).
        self.on_batch = on_batch
        #: node id -> monotonic arrival time of the oldest store event that changed the proxy
        #: and that no response has reported yet (see ``take_change_time``).
        self._changed_at: dict[str, float] = {}
        self._meshes: dict[str, MeshState] = {}
        self._proxies: dict[str, ProxyRecord] = {}
        #: (mesh, service) → node ids of connected proxies that hold the service's resources.
        self._consumers: dict[tuple[str, str], set[str]] = {}
        self._clusters: dict[tuple[str, str], tuple[str, VersionedResource]] = {}
        self._load_assignments: dict[tuple[str, str], VersionedResource] = {}
        self._interner = Interner()
        self._synced = False
        self._synced_waiters: list[anyio.Event] = []
        self.last_batch = BatchStats()

    # --- shared, per-service resources -------------------------------------------------

    def _service_cluster(self, mesh: MeshState, service: str) -> VersionedResource:
        key = (mesh.name, service)
        protocol = mesh.protocol(service)
        cached = self._clusters.get(key)
        if cached is not None and cached[0] == protocol:
            return cached[1]
        message = service_cluster(service, protocol)
        resource = self._interner.intern(types.CLUSTER, message.name, message)
        self._clusters[key] = (protocol, resource)
        return resource

    def _service_load_assignment(self, mesh: MeshState, service: str) -> VersionedResource:
        key = (mesh.name, service)
        cached = self._load_assignments.get(key)
        if cached is None:
            message = load_assignment(service, mesh.endpoints(service))
            cached = self._interner.intern(types.ENDPOINT, message.cluster_name, message)
            self._load_assignments[key] = cached
        return cached

    def _mesh(self, name: str) -> MeshState:
        state = self._meshes.get(name)
        if state is None:
            state = self._meshes[name] = MeshState(name)
        return state

    # --- proxies --------------------------------------------------------------------------

    def _assemble(self, record: ProxyRecord) -> bool:
        """Rebuild one proxy's desired state and notify its streams; True if anything changed."""
        mesh = self._mesh(record.mesh)
        dataplane = mesh.dataplanes.get(record.name)
        old = record.resources
        for service in record.outbound_services:
            consumers = self._consumers.get((record.mesh, service))
            if consumers is not None:
                consumers.discard(record.node_id)
        if dataplane is None:
            record.resources, record.outbound_services = None, frozenset()
            new = None
        else:
            assembly = assemble(
                dataplane,
                mesh,
                self.default_admin_port,
                self._interner,
                self._service_cluster,
                self._service_load_assignment,
            )
            record.resources, record.outbound_services = (
                assembly.resources,
                assembly.outbound_services,
            )
            new = assembly.resources
            for service in assembly.outbound_services:
                self._consumers.setdefault((record.mesh, service), set()).add(record.node_id)
        changes = _diff(old or {}, new or {})
        if changes or (old is None) != (new is None):
            # A proxy becoming known (or unknown) is news even with no resources.
            record.notify(changes or {types.CLUSTER: ()})
            return True
        return False

    def subscribe(self, node_id: str) -> Subscription:
        """Start following a proxy (ValueError for a malformed node id)."""
        mesh, name = parse_node_id(node_id)
        record = self._proxies.get(node_id)
        if record is None:
            record = self._proxies[node_id] = ProxyRecord(node_id, mesh, name)
            self._assemble(record)
        subscription = Subscription(record)
        record.subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        record = subscription.record
        if subscription in record.subscribers:
            record.subscribers.remove(subscription)
        if record.subscribers or self._proxies.get(record.node_id) is not record:
            return
        # The last stream of this proxy is gone: forget its state (memory follows connections).
        del self._proxies[record.node_id]
        self._changed_at.pop(record.node_id, None)
        for service in record.outbound_services:
            consumers = self._consumers.get((record.mesh, service))
            if consumers is not None:
                consumers.discard(record.node_id)
                if not consumers:
                    del self._consumers[(record.mesh, service)]

    @asynccontextmanager
    async def watch_proxy(self, node_id: str) -> AsyncIterator[Subscription]:
        """``kuma.xds.source.ConfigSource``: follow a proxy while the context is open."""
        subscription = self.subscribe(node_id)
        try:
            yield subscription
        finally:
            self.unsubscribe(subscription)

    def take_change_time(self, node_id: str) -> float | None:
        """When (``time.monotonic``) the oldest store event not yet followed by a response to
        this proxy reached the engine; None if none. Taking it clears it, so the first response
        after a change measures its propagation (metrics)."""
        return self._changed_at.pop(node_id, None)

    @property
    def connected_proxies(self) -> int:
        return len(self._proxies)

    @property
    def consumer_entries(self) -> int:
        return len(self._consumers)

    @property
    def synced(self) -> bool:
        """True once the store's initial snapshot has been applied."""
        return self._synced

    async def wait_synced(self) -> None:
        if not self._synced:
            waiter = anyio.Event()
            self._synced_waiters.append(waiter)
            await waiter.wait()

    # --- batches ---------------------------------------------------------------------------

    def apply_now(
        self, events: Iterable[ResourceEvent], received_at: float | None = None
    ) -> BatchStats:
        """Apply a batch without yielding (tests, benchmarks)."""
        steps = self._apply(events, received_at)
        for _ in steps:
            pass
        return self.last_batch

    async def apply(
        self, events: Iterable[ResourceEvent], received_at: float | None = None
    ) -> BatchStats:
        """Apply a batch, yielding to the event loop every ``chunk`` proxies. ``received_at``
        (``time.monotonic``) is when its oldest event arrived; default: now."""
        for _ in self._apply(events, received_at):
            await anyio.lowlevel.checkpoint()
        return self.last_batch

    def _apply(self, events: Iterable[ResourceEvent], received_at: float | None) -> Iterator[None]:
        started = time.perf_counter()
        stamp = received_at if received_at is not None else time.monotonic()
        changed_at = self._changed_at
        stats = BatchStats()
        touched: dict[str, set[str]] = {}
        #: Meshes whose stored VIP allocation changed in this batch.
        vips_changed: set[str] = set()
        reassemble: set[str] = set()
        for event in events:
            stats.events += 1
            resource = event.resource
            if isinstance(resource, Dataplane):
                mesh = self._mesh(resource.mesh)
                if event.operation is Operation.DELETE:
                    services = mesh.remove(resource.name)
                elif mesh.dataplanes.get(resource.name) == resource:
                    continue
                else:
                    services = mesh.put(resource)
                touched.setdefault(mesh.name, set()).update(services)
                node_id = f"{mesh.name}.{resource.name}"
                if node_id in self._proxies:
                    reassemble.add(node_id)
            elif isinstance(resource, Mesh):
                mesh = self._mesh(resource.name)
                mesh.mesh = None if event.operation is Operation.DELETE else resource
                # Mesh-wide settings (passthrough) reach every proxy of the mesh: rare.
                reassemble.update(n for n, r in self._proxies.items() if r.mesh == mesh.name)
            elif isinstance(resource, MeshVips):
                # Named after its mesh (a global resource): kuma/cp/vips.py writes it.
                mesh = self._mesh(resource.name)
                mesh.set_stored_vips({} if event.operation is Operation.DELETE else resource.vips)
                vips_changed.add(mesh.name)
        for mesh_name in vips_changed | touched.keys():
            mesh = self._meshes[mesh_name]
            if mesh.refresh_vips():
                reassemble.update(
                    n
                    for n, r in self._proxies.items()
                    if r.mesh == mesh_name and _is_transparent(mesh, r.name)
                )
        patch: dict[tuple[str, str], set[str]] = {}
        for mesh_name, services in touched.items():
            mesh = self._meshes[mesh_name]
            stats.services_touched += len(services)
            for service in services:
                key = (mesh_name, service)
                self._load_assignments.pop(key, None)
                consumers = self._consumers.get(key, set())
                cached = self._clusters.get(key)
                if cached is not None and cached[0] != mesh.protocol(service):
                    # The protocol shapes the consumers' listeners too: re-assemble them.
                    reassemble.update(consumers)
                else:
                    patch[key] = consumers
        done = 0
        for node_id in reassemble:
            record = self._proxies.get(node_id)
            if record is not None and self._assemble(record):
                stats.proxies_notified += 1
                changed_at.setdefault(node_id, stamp)
            stats.proxies_assembled += 1
            done += 1
            if done % self.chunk == 0:
                yield
        for (mesh_name, service), consumers in patch.items():
            if not consumers:
                continue
            cla = self._service_load_assignment(self._meshes[mesh_name], service)
            for node_id in list(consumers - reassemble):
                record = self._proxies.get(node_id)
                if record is None or record.resources is None:
                    continue
                bucket = record.resources[types.ENDPOINT]
                current = bucket.get(cla.name)
                if current is not None and current.version == cla.version:
                    continue
                bucket[cla.name] = cla
                record.notify({types.ENDPOINT: (cla.name,)})
                stats.proxies_notified += 1
                changed_at.setdefault(node_id, stamp)
                done += 1
                if done % self.chunk == 0:
                    yield
        stats.seconds = time.perf_counter() - started
        self.last_batch = stats
        if self.on_batch is not None:
            self.on_batch(stats)

    def _mark_synced(self) -> None:
        self._synced = True
        for waiter in self._synced_waiters:
            waiter.set()
        self._synced_waiters.clear()

    async def run(self, store: Store) -> None:
        """Follow the store until cancelled, applying what arrived since the last batch."""
        pending: deque[WatchItem] = deque()
        arrived = anyio.Event()
        done = False
        #: When the oldest item in ``pending`` arrived (propagation latency starts there).
        pending_since: float | None = None

        async def read(events: AsyncIterator[WatchItem]) -> None:
            nonlocal arrived, done, pending_since
            async for item in events:
                if pending_since is None:
                    pending_since = time.monotonic()
                pending.append(item)
                arrived.set()
            done = True
            arrived.set()

        async with store.watch() as events, anyio.create_task_group() as tg:
            tg.start_soon(read, events)
            snapshot: list[ResourceEvent] = []
            while True:
                await arrived.wait()
                arrived = anyio.Event()
                received_at, pending_since = pending_since, None
                batch: list[ResourceEvent] = []
                while pending:
                    item = pending.popleft()
                    if isinstance(item, Synced):
                        if not self._synced:
                            stats = await self.apply(snapshot)
                            snapshot = []
                            log.info(
                                "engine loaded the snapshot",
                                extra={
                                    "fields": {
                                        "resources": stats.events,
                                        "seconds": round(stats.seconds, 3),
                                    }
                                },
                            )
                            self._mark_synced()
                        continue
                    (batch if self._synced else snapshot).append(item)
                if batch:
                    await self.apply(batch, received_at)
                if done:
                    tg.cancel_scope.cancel()
                    return


def _is_transparent(mesh: MeshState, name: str) -> bool:
    dataplane = mesh.dataplanes.get(name)
    return dataplane is not None and dataplane.is_transparent


def _diff(
    old: dict[str, dict[str, VersionedResource]], new: dict[str, dict[str, VersionedResource]]
) -> dict[str, set[str]]:
    changes: dict[str, set[str]] = {}
    for type_url in old.keys() | new.keys():
        before = old.get(type_url, {})
        after = new.get(type_url, {})
        names = {
            name
            for name in before.keys() | after.keys()
            if (a := before.get(name)) is None
            or (b := after.get(name)) is None
            or a.version != b.version
        }
        if names:
            changes[type_url] = names
    return changes
