"""kuma-cp's part in KDS (kuma/kds): global serves it on ``multizone.global.kds.grpcPort``,
a federated zone dials global. Standalone and a zone without a global do neither."""

from __future__ import annotations

import logging
import ssl

import anyio
from anyio.abc import TaskStatus

from kuma.insights import Insights, new_instance_id
from kuma.kds.auth import ZoneAuthenticator
from kuma.kds.client import ZoneClient, client_tls, parse_address
from kuma.kds.server import serve_kds
from kuma.kds.zone_status import LiveInstances, ZoneStatus
from kuma.metrics.kds import KdsTraffic
from kuma.store import Store
from kuma.tokens.verifier import TokenVerifier

from .authn import Authentication
from .config import CpConfig, parse_duration
from .logs import fields
from .multizone_config import GLOBAL
from .tls import load_certificate

log = logging.getLogger("kuma.cp")


async def _server_tls(store: Store, config: CpConfig) -> ssl.SSLContext | None:
    kds = config.multizone.global_.kds
    if not kds.tls_enabled:
        log.warning("multizone.global.kds.tlsEnabled is false: KDS is plain text (lab only)")
        return None
    # The control plane's certificate, as the dp server and the API use it, unless KDS has
    # its own.
    own = bool(kds.tls_cert_file or kds.tls_key_file)
    certificate = await load_certificate(
        store,
        "multizone.global.kds.tlsCertFile" if own else "general.tlsCertFile",
        kds.tls_cert_file if own else config.general.tls_cert_file,
        kds.tls_key_file if own else config.general.tls_key_file,
    )
    return certificate.server_context()


async def run_kds(
    config: CpConfig,
    store: Store,
    authn: Authentication,
    *,
    instance_id: str = "",
    live: LiveInstances | None = None,
    insights: Insights | None = None,
    traffic: KdsTraffic | None = None,
    task_status: TaskStatus[int | None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Global: serve KDS (started with its port) and record zones under ``instance_id``
    (``live``: which instances sharing the store are alive). Federated zone: follow global
    (started at once: nothing local waits for global). Otherwise: nothing to do. ``insights``:
    global keeps the zones' there, a zone sends its own up (kuma/kds/insight_sync.py)."""
    if config.mode == GLOBAL:
        tokens = config.dp_server.authn.zone_proxy.type != "none"
        if not tokens:
            log.warning("dpServer.authn.zoneProxy.type is none: KDS takes zones at their word")
        verifier = TokenVerifier(authn.keys) if tokens else None
        kds = config.multizone.global_.kds
        await serve_kds(
            store,
            ZoneAuthenticator(verifier, authn.live),
            config.dp_server.interface,
            config.multizone.global_.kds.grpc_port,
            await _server_tls(store, config),
            zones=ZoneStatus(
                store,
                instance_id or new_instance_id(),
                flush_interval=parse_duration(kds.zone_insight_flush_interval),
                live=live,
            ),
            received=insights.received if insights is not None else None,
            traffic=traffic,
            max_msg_size=kds.max_msg_size,
            task_status=task_status,
        )
        return
    task_status.started(None)
    if not config.is_federated_zone:
        return
    zone = config.multizone.zone
    address = parse_address(zone.global_address)
    log.info("KDS: zone follows global", extra=fields(zone=zone.name, address=zone.global_address))
    client = ZoneClient(
        store,
        zone.name,
        address,
        zone.kds.zone_token_file,
        client_tls(zone.kds.root_ca_file, zone.kds.tls_skip_verify) if address.tls else None,
        instance_id=instance_id,
        insights=insights.store if insights is not None else None,
        traffic=traffic,
        max_msg_size=zone.kds.max_msg_size,
    )
    await client.run()
