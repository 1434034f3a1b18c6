"""kuma-cp's MADS server: the assignment index following the store, served over HTTP (or
HTTPS with ``monitoringAssignmentServer.tlsEnabled``) on ``monitoringAssignmentServer``'s
interface and port (kuma/mads)."""

from __future__ import annotations

import logging
import ssl

import anyio
from anyio.abc import TaskStatus

from kuma.api.server import ApiServer
from kuma.mads.http import mads_app
from kuma.mads.index import AssignmentIndex
from kuma.store import Store

from .config import CpConfig, parse_duration
from .logs import fields
from .tls import load_certificate

log = logging.getLogger("kuma.cp")


async def _server_tls(store: Store, config: CpConfig) -> ssl.SSLContext | None:
    mads = config.monitoring_assignment_server
    if not mads.tls_enabled:
        return None
    # Kuma: the section's own files, else general's (autoconfig.go), else the generated one.
    own = bool(mads.tls_cert_file)
    general = config.general
    certificate = await load_certificate(
        store,
        "monitoringAssignmentServer.tlsCertFile" if own else "general.tlsCertFile",
        mads.tls_cert_file if own else general.tls_cert_file,
        mads.tls_key_file if own else general.tls_key_file,
    )
    return certificate.server_context()


async def serve_mads(
    store: Store,
    config: CpConfig,
    index: AssignmentIndex | None = None,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve MADS until cancelled; ``task_status.started`` gets the bound port once the
    assignments of the store's current state are in. ``index``: a fresh one unless given."""
    mads = config.monitoring_assignment_server
    tls = await _server_tls(store, config)
    index = AssignmentIndex() if index is None else index
    async with anyio.create_task_group() as tg:
        await tg.start(index.run, store)
        app = mads_app(index, parse_duration(mads.default_fetch_timeout))
        async with ApiServer(app, mads.interface, mads.port, tls=tls) as server:
            log.info(
                "MADS server listening",
                extra=fields(interface=mads.interface, port=server.port, tls=tls is not None),
            )
            task_status.started(server.port)
            try:
                await anyio.sleep_forever()
            finally:
                index.close()
