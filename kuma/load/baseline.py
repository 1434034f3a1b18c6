"""The baseline: a snapshot-per-proxy control plane, for comparison with kuma-cp's engine.

Snapshot designs (Kuma's own 1 s refresh, go-control-plane's snapshot cache fed by a generator)
rebuild a proxy's whole config when anything it depends on changes, and version the snapshot
as a whole, so the proxy is sent the full config again. This server does exactly that, with
kuma-py's own pieces so only the strategy differs: the same store plugins and watch, the same
inputs, proxy index and watches (``kuma.xds.engine``), the same generator
(``generate_proxy``), the same ADS server.
Per change it regenerates and re-serializes every *affected* proxy (the consumers of a touched
service and the changed proxy; every transparent proxy of the mesh when its service set
changes) and stamps each resource with the proxy's new snapshot number, so the delta protocol
resends all of them. With ``KUMA_LOAD_BASELINE_SCOPE=mesh`` it regenerates every connected proxy
of the mesh per change, as Kuma's periodic refresh does, and resends those whose content
changed; the default scope ``affected`` makes the comparison conservative.

Run: ``python -m kuma.load.baseline run`` with kuma-cp's ``KUMA_*`` environment; it logs
``baseline is ready dp_port=<port>``.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from contextlib import AbstractAsyncContextManager, suppress

import anyio
import anyio.lowlevel

from kuma.cp import logs
from kuma.cp.cli import GC_THRESHOLDS
from kuma.cp.config import load_config
from kuma.cp.vips import VipAllocator
from kuma.resources import Dataplane, MeshVips
from kuma.store import ResourceEvent, Store, Synced, open_store
from kuma.xds import types
from kuma.xds.engine import (
    EngineInputs,
    ProxyIndex,
    ProxyRecord,
    ProxyResources,
    ProxyWatches,
    Subscription,
)
from kuma.xds.generate import generate_proxy
from kuma.xds.proxy_metadata import ProxyMetadata
from kuma.xds.server import serve
from kuma.xds.snapshot import VersionedResource, versioned

log = logging.getLogger("kuma.load.baseline")
CHUNK = 64


class BaselineSource:
    """A ``ConfigSource`` that regenerates whole proxies per change."""

    def __init__(self, admin_port: int = 9901, scope: str = "affected") -> None:
        self.admin_port = admin_port
        self.scope = scope
        # The engine's own inputs, proxy index and watches; only the strategy differs.
        self._inputs = EngineInputs()
        self._index = ProxyIndex()
        self._watches = ProxyWatches(on_first=self._opened, on_last=self._index.remove)
        self._snapshots = 0
        self.synced = anyio.Event()

    def _opened(self, record: ProxyRecord) -> None:
        self._index.add(record)
        self._regenerate(record)

    def _regenerate(self, record: ProxyRecord, *, only_if_changed: bool = False) -> None:
        dataplane = self._inputs.dataplane(record.mesh, record.name)
        old = record.resources or {}
        if dataplane is None:
            self._index.set_consumed(record, ())
            record.publish(None)
            return
        mesh = self._inputs.mesh(record.mesh)
        generated = {
            type_url: {name: versioned(type_url, name, m) for name, m in by_name.items()}
            for type_url, by_name in generate_proxy(dataplane, mesh, self.admin_port).items()
        }
        if only_if_changed and _content(generated) == _content(old):
            return  # a snapshot design compares the new snapshot and sends nothing
        self._snapshots += 1
        stamp = f".{self._snapshots}"
        new: ProxyResources = {
            type_url: {
                name: VersionedResource(type_url, name, r.version + stamp, r.body)
                for name, r in by_name.items()
            }
            for type_url, by_name in generated.items()
        }
        self._index.set_consumed(record, new.get(types.ENDPOINT, {}))
        # Every resource carries the new snapshot's stamp: all of them differ, all are resent.
        record.publish(new)

    def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> AbstractAsyncContextManager[Subscription]:
        return self._watches.watch_proxy(node_id, metadata)

    async def _apply(self, events: list[ResourceEvent]) -> None:
        invalidation, _ = self._inputs.apply(events)
        affected: set[str] = {str(proxy) for proxy in invalidation.dataplanes}
        for mesh_name, services in invalidation.services.items():
            for service in services:
                affected.update(self._index.consumers(mesh_name, service))
        for mesh_name in invalidation.vips:
            affected.update(r.node_id for r in self._index.in_mesh(mesh_name))
        todo = sorted(affected)
        if self.scope == "mesh" and events:
            meshes = {e.resource.mesh for e in events if isinstance(e.resource, Dataplane)}
            meshes |= {e.resource.name for e in events if isinstance(e.resource, MeshVips)}
            todo = sorted(r.node_id for m in meshes for r in self._index.in_mesh(m))
        for count, node_id in enumerate(todo):
            record = self._index.get(node_id)
            if record is not None:
                self._regenerate(record, only_if_changed=node_id not in affected)
            if count % CHUNK == CHUNK - 1:
                await anyio.lowlevel.checkpoint()

    async def run(self, store: Store) -> None:
        snapshot: list[ResourceEvent] = []
        async with store.watch() as items:
            async for item in items:
                if isinstance(item, Synced):
                    if not self.synced.is_set():
                        await self._apply(snapshot)
                        snapshot = []
                        self.synced.set()
                elif not self.synced.is_set():
                    snapshot.append(item)
                else:
                    # One event at a time: a snapshot design reacts to each change.
                    await self._apply([item])


def _content(resources: dict[str, dict[str, VersionedResource]]) -> dict[str, dict[str, str]]:
    """Name → content version (the snapshot stamp taken off)."""
    return {
        type_url: {name: r.version.partition(".")[0] for name, r in by_name.items()}
        for type_url, by_name in resources.items()
    }


async def _main() -> None:
    config = load_config(None, os.environ)
    store_type = config.store.type
    async with open_store(store_type, config.store.options_for(store_type)) as store:
        scope = os.environ.get("KUMA_LOAD_BASELINE_SCOPE", "affected")
        source = BaselineSource(config.bootstrap_server.params.admin_port, scope)
        async with anyio.create_task_group() as tg:
            tg.start_soon(source.run, store)
            # VIPs for transparent proxies are allocated in the store, as kuma-cp does.
            tg.start_soon(VipAllocator(store).run)
            await source.synced.wait()
            port = await tg.start(serve, source, config.dp_server.interface, config.dp_server.port)
            log.info("baseline is ready", extra=logs.fields(dp_port=port))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["run"]:
        print("usage: python -m kuma.load.baseline run  (configured by KUMA_* like kuma-cp)")
        return 2
    config = load_config(None, os.environ)
    logs.configure(config.logging.level, config.logging.format)
    # kuma-cp's collector settings: the comparison is of strategies, not of GC pauses.
    gc.set_threshold(*GC_THRESHOLDS)
    with suppress(KeyboardInterrupt):
        anyio.run(_main)
    return 0


if __name__ == "__main__":
    sys.exit(main())
