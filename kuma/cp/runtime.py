"""The control plane's process runtime: the store, the engine, the xDS server.

One task group owns everything; cancelling it (SIGINT/SIGTERM) unwinds the components, each
closing what it owns (the ADS listener, open streams, the store's watches).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

import kuma
from kuma.resources import ResourceKey
from kuma.store import ResourceEvent, Store, Synced, open_store
from kuma.xds.engine import Engine
from kuma.xds.server import serve as serve_ads

from .config import CpConfig
from .defaults import ensure_default_mesh
from .logs import fields

log = logging.getLogger("kuma.cp")


async def _log_changes(store: Store) -> None:
    """Log every change of the store after its initial snapshot (an operator's audit trail)."""
    async with store.watch() as events:
        synced = False
        async for item in events:
            if isinstance(item, Synced):
                synced = True
            elif synced:
                _log_event(item)


def _log_event(event: ResourceEvent) -> None:
    key: ResourceKey = event.key
    log.info(
        "resource changed",
        extra=fields(
            operation=event.operation.value,
            type=key.type,
            mesh=key.mesh or None,
            name=key.name,
            version=event.meta.version,
        ),
    )


async def run_control_plane(
    config: CpConfig, *, on_ready: Callable[[], Awaitable[Any]] | None = None
) -> None:
    """Run until cancelled."""
    store_type = config.store.type
    async with open_store(store_type, config.store.options_for(store_type)) as store:
        log.info("store opened", extra=fields(store=store.name))
        if not config.defaults.skip_mesh_creation:
            await ensure_default_mesh(store)
        engine = Engine(default_admin_port=config.bootstrap_server.params.admin_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_log_changes, store)
            tg.start_soon(engine.run, store)
            await engine.wait_synced()
            ads_port = await tg.start(
                serve_ads, engine, config.dp_server.interface, config.dp_server.port
            )
            log.info(
                "kuma-cp is ready",
                extra=fields(version=kuma.__version__, store=store.name, dp_port=ads_port),
            )
            if on_ready is not None:
                await on_ready()
