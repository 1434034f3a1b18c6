"""The incremental diff engine: store events in, per-proxy changed (type, name) sets out.

Per batch of events it
1. hands each event to the input handler of its resource type (``handlers/``), which updates
   the inputs (the mesh indexes: Dataplanes, service → endpoints, the stored VIPs) and records
   what the change invalidates (:class:`~.invalidation.Invalidation`);
2. asks the proxy index (:class:`~.proxy_index.ProxyIndex`) which connected proxies that
   touches: the proxies whose own inputs changed (their Dataplane, their mesh, the inputs of a
   service they use, the VIPs of a transparent-proxy mesh) are re-assembled, and the rebuilt
   ClusterLoadAssignment of a touched service is patched into its other consumers;
3. tells each affected proxy's streams which (type, name) pairs changed.
Nothing runs when nothing changes. Only proxies with a connected stream are assembled.

Heavy loops yield to the event loop every ``chunk`` proxies so streams keep sending and
receiving ACKs while a large change is processed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Set
from contextlib import AbstractAsyncContextManager

import anyio
import anyio.lowlevel
import msgspec

from kuma.store import ResourceEvent, Store, Synced, WatchItem
from kuma.xds import types
from kuma.xds.gateway.assemble import with_gateway
from kuma.xds.generate.destination import Destination
from kuma.xds.proxy_metadata import ProxyMetadata
from kuma.xds.snapshot import VersionedResource

from .assemble import NO_LOCALITIES, NO_SUBSETS, assemble
from .handlers import InputHandler
from .inputs import EngineInputs
from .interner import Interner
from .invalidation import Invalidation
from .mesh_state import IdentityReady, MeshState
from .proxy_index import ProxyIndex
from .proxy_memo import ProxyMemo
from .shared import SharedResources
from .watches import ProxyRecord, ProxyWatches, Subscription
from .zone_egress import RemotePartsCache, assemble_zone_egress
from .zone_ingress import ZoneIngressParts, assemble_zone_ingress, endpoints_key, mesh_key

log = logging.getLogger("kuma.xds.engine")


class BatchStats(msgspec.Struct):
    events: int = 0
    services_touched: int = 0
    proxies_assembled: int = 0
    proxies_notified: int = 0
    seconds: float = 0.0


class Engine:
    def __init__(
        self,
        *,
        default_admin_port: int = 9901,
        chunk: int = 256,
        on_batch: Callable[[BatchStats], None] | None = None,
        handlers: Iterable[InputHandler] | None = None,
        identity_ready: IdentityReady | None = None,
        linger: float = 0.0,
        linger_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``identity_ready``: whether a proxy (node id) holds a certificate of its mesh's CA
        (PERMISSIVE TLS readiness, see ``MeshState.tls_ready``); its changes come in through
        :meth:`invalidate`. ``linger``: seconds a proxy stays assembled (and followed) after
        its last stream closed, so a reconnect within them costs no assembly
        (:class:`~.watches.ProxyWatches`); its proxy counts in :attr:`proxies` meanwhile;
        ``linger_clock`` the monotonic clock it is measured on."""
        self.default_admin_port = default_admin_port
        self.chunk = chunk
        #: Called with each batch's stats once it is applied (metrics).
        self.on_batch = on_batch
        self._inputs = EngineInputs(handlers, identity_ready)
        self._meshes = self._inputs.meshes
        #: Invalidations from derived inputs (not store events), applied with the next batch.
        self._external = Invalidation()
        self._external_arrived: anyio.Event | None = None
        self._index = ProxyIndex()
        self._watches = ProxyWatches(
            on_first=self._opened,
            on_last=self._closed,
            on_metadata=self._reassemble,
            linger=linger,
            clock=linger_clock,
        )
        self._interner = Interner()
        self._shared = SharedResources(self._interner)
        self._ingress_parts = ZoneIngressParts(self._interner)
        self._egress_parts = RemotePartsCache(self._interner)
        self._synced = False
        self._synced_waiters: list[anyio.Event] = []
        self.last_batch = BatchStats()

    # --- proxies --------------------------------------------------------------------------

    def _opened(self, record: ProxyRecord) -> None:
        self._index.add(record)
        self._assemble(record, None)

    def _closed(self, record: ProxyRecord) -> None:
        self._index.remove(record)
        if not record.mesh:
            self._ingress_parts.forget(record.name)

    def _reassemble(self, record: ProxyRecord) -> None:
        # A stream's node said something new about the proxy (its metadata).
        self._assemble(record, None)

    def _assemble(self, record: ProxyRecord, since: float | None) -> bool:
        """Rebuild one proxy's desired state and notify its streams; True if anything changed.
        ``since``: when the oldest input behind the change arrived (None: no input did)."""
        if not record.mesh:  # a zone proxy (node id ``.<name>``)
            egress = self._meshes.zone_egress_proxies.get(record.name)
            if egress is not None and record.name not in self._meshes.zone_ingresses:
                egress_parts = assemble_zone_egress(
                    egress, self._meshes, self._interner, self._egress_parts
                )
                self._index.set_selections(record, egress_parts.selections)
                return record.publish(egress_parts.resources, since)
            return self._assemble_zone_ingress(record, since)
        mesh = self._meshes[record.mesh]
        dataplane = mesh.dataplanes.get(record.name)
        if dataplane is None:
            record.subsets = NO_SUBSETS
            record.localities = NO_LOCALITIES
            record.memo = ProxyMemo()  # let the old Dataplane and resources go
            self._index.set_consumed(record, ())
            self._index.set_selections(record, ())
            return record.publish(None, since)
        assembly = assemble(
            dataplane,
            mesh,
            self.default_admin_port,
            self._interner,
            self._shared,
            dns_port=record.metadata.dns_port,
            readiness_port=record.metadata.readiness_port,
            metrics=record.metadata.metrics,
            access_log_socket=record.metadata.access_log_socket,
            memo=record.memo,
        )
        # A builtin gateway's listeners, routes and backends (kuma/xds/gateway).
        assembly = with_gateway(assembly, dataplane, mesh, self._interner, self._shared)
        record.subsets = assembly.subsets
        record.localities = assembly.localities
        self._index.set_consumed(record, assembly.outbound_services)
        self._index.set_selections(record, assembly.selections)
        return record.publish(assembly.resources, since)

    def _assemble_zone_ingress(self, record: ProxyRecord, since: float | None) -> bool:
        ingress = self._meshes.zone_ingresses.get(record.name)
        if ingress is None:
            self._index.set_selections(record, ())
            self._ingress_parts.forget(record.name)
            return record.publish(None, since)
        assembly = assemble_zone_ingress(ingress, record.node_id, self._meshes, self._ingress_parts)
        self._index.set_selections(record, assembly.selections)
        return record.publish(assembly.resources, since)

    def subscribe(self, node_id: str, metadata: ProxyMetadata | None = None) -> Subscription:
        """Start following a proxy (ValueError for a malformed node id). A stream whose node
        says something new about the proxy (kuma-dp restarted with another DNS port)
        re-assembles it: the latest stream's metadata wins. A reader that is not the proxy
        (``metadata`` None) changes nothing."""
        return self._watches.subscribe(node_id, metadata)

    def unsubscribe(self, subscription: Subscription) -> None:
        self._watches.unsubscribe(subscription)

    def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> AbstractAsyncContextManager[Subscription]:
        """``kuma.xds.source.ConfigSource``: follow a proxy while the context is open."""
        return self._watches.watch_proxy(node_id, metadata)

    @property
    def proxies(self) -> ProxyIndex:
        """The connected proxies (read it; the engine keeps it)."""
        return self._index

    @property
    def inputs(self) -> EngineInputs:
        """The engine's inputs (add observers before ``run``)."""
        return self._inputs

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
        (``time.monotonic``) is when its oldest event arrived; default: now. It travels with
        each change notice (``Changes.since``): streams measure propagation from it."""
        for _ in self._apply(events, received_at):
            await anyio.lowlevel.checkpoint()
        return self.last_batch

    def invalidate(self, invalidation: Invalidation) -> None:
        """A derived input changed (e.g. a service's TLS readiness, from certificate issuing):
        apply ``invalidation`` with the next batch (``run`` starts one at once)."""
        self._external.merge(invalidation)
        if self._external_arrived is not None:
            self._external_arrived.set()

    def _apply(self, events: Iterable[ResourceEvent], received_at: float | None) -> Iterator[None]:
        started = time.perf_counter()
        stamp = received_at if received_at is not None else time.monotonic()
        # Proxies gone longer than ``linger`` cost no assembly in this batch.
        self._watches.expire()
        stats = BatchStats()
        external, self._external = self._external, Invalidation()
        invalidation, stats.events = self._inputs.apply(events, external)
        reassemble, patch, zone_patch = self._touched(invalidation, stats)
        done = 0
        for node_id in reassemble:
            record = self._index.get(node_id)
            if record is not None and self._assemble(record, stamp):
                stats.proxies_notified += 1
            stats.proxies_assembled += 1
            done += 1
            if done % self.chunk == 0:
                yield
        for node_id, touched in zone_patch.items():
            record = self._index.get(node_id)
            if node_id in reassemble or record is None or record.resources is None:
                continue
            # A zone proxy: the touched services' CLAs alone, unless their chains changed.
            patched = self._ingress_parts.patch(record, touched, self._meshes, stamp)
            if patched is None:
                patched = self._assemble(record, stamp)
                stats.proxies_assembled += 1
            stats.proxies_notified += patched
        for (mesh_name, service), consumers in patch.items():
            if not consumers:
                continue
            mesh = self._meshes[mesh_name]
            # Most consumers reach the whole service: its CLA, built once for all of them.
            whole: tuple[VersionedResource, ...] = (
                self._shared.load_assignment(mesh, Destination(service)),
            )
            for node_id in list(consumers - reassemble):
                record = self._index.get(node_id)
                if record is None or record.resources is None:
                    continue
                bucket = record.resources[types.ENDPOINT]
                changed: list[str] = []
                subsets = record.subsets.get(service) if record.subsets else None
                # Each destination's CLA is built once (cached), then shared by its consumers.
                clas = whole
                shape = record.localities.get(service) if record.localities else None
                if shape is not None:
                    # Rewritten for the proxy's locality shape: built once per shape.
                    reached = subsets if subsets is not None else (Destination(service),)
                    clas = tuple(
                        self._shared.shaped_load_assignment(mesh, d, shape) for d in reached
                    )
                elif subsets is not None:
                    clas = tuple(self._shared.load_assignment(mesh, d) for d in subsets)
                for cla in clas:
                    current = bucket.get(cla.name)
                    if current is not None and current.version == cla.version:
                        continue
                    bucket[cla.name] = cla
                    changed.append(cla.name)
                if not changed:
                    continue
                record.notify({types.ENDPOINT: changed}, stamp)
                stats.proxies_notified += 1
                done += 1
                if done % self.chunk == 0:
                    yield
        stats.seconds = time.perf_counter() - started
        self.last_batch = stats
        if self.on_batch is not None:
            self.on_batch(stats)

    def _touched(
        self, invalidation: Invalidation, stats: BatchStats
    ) -> tuple[set[str], dict[tuple[str, str], Set[str]], dict[str, list[tuple[str, str]]]]:
        """The connected proxies an invalidation touches, from the index: the node ids to
        re-assemble, per touched service the consumers to patch its endpoints into, and per
        zone proxy carrying touched services those services."""
        index, meshes = self._index, self._meshes
        reassemble: set[str] = set()
        for proxy in invalidation.dataplanes:
            record = index.of_dataplane(proxy.mesh, proxy.name)
            if record is not None:
                reassemble.add(record.node_id)
        for mesh_name in invalidation.meshes:
            # Mesh-wide settings (passthrough) reach every proxy of the mesh: rare.
            reassemble.update(r.node_id for r in index.in_mesh(mesh_name))
            reassemble.update(index.selected_by(mesh_key(mesh_name)))  # zone proxies
        for key in invalidation.selections:
            reassemble.update(index.selected_by(key))
        for mesh_name in invalidation.vips:
            # The VIPs the mesh's proxies see changed: its transparent proxies list them.
            mesh = meshes[mesh_name]
            reassemble.update(
                r.node_id for r in index.in_mesh(mesh_name) if _is_transparent(mesh, r.name)
            )
        patch: dict[tuple[str, str], Set[str]] = {}
        zone_patch: dict[str, list[tuple[str, str]]] = {}
        for mesh_name, services in invalidation.services.items():
            mesh = meshes[mesh_name]
            stats.services_touched += len(services)
            for service in services:
                self._shared.endpoints_changed(mesh, service)
                self._ingress_parts.endpoints_changed(mesh_name, service)
                for node_id in index.selected_by(endpoints_key(mesh_name, service)):
                    zone_patch.setdefault(node_id, []).append((mesh_name, service))
                consumers = index.consumers(mesh_name, service)
                if self._shared.inputs_changed(mesh, service) or mesh.externals.endpoints(service):
                    # The inputs shape the consumers' listeners too: re-assemble them. An
                    # external service's endpoints live in its cluster: nothing to patch.
                    reassemble.update(consumers)
                else:
                    patch[(mesh_name, service)] = consumers
        return reassemble, patch, zone_patch

    def _mark_synced(self) -> None:
        self._synced = True
        for waiter in self._synced_waiters:
            waiter.set()
        self._synced_waiters.clear()

    async def run(self, store: Store) -> None:
        """Follow the store until cancelled, applying what arrived since the last batch."""
        pending: deque[WatchItem] = deque()
        arrived = self._external_arrived = anyio.Event()
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
                arrived = self._external_arrived = anyio.Event()
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
                if batch or (self._synced and self._external):
                    await self.apply(batch, received_at)
                if done:
                    tg.cancel_scope.cancel()
                    return


def _is_transparent(mesh: MeshState, name: str) -> bool:
    dataplane = mesh.dataplanes.get(name)
    return dataplane is not None and dataplane.is_transparent
