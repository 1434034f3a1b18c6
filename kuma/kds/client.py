"""A federated zone's side of KDS: it dials global (``multizone.zone.globalAddress``), names
itself (``client-id``), presents its zone token, and keeps two streams open on one connection:

- ``GlobalToZoneSync``: it takes global's Meshes, Secrets and policies into its own store
  (:mod:`.receiver`, labelled ``kuma.io/origin: global``); the engine serves them from there;
- ``ZoneToGlobalSync``: it offers its Dataplanes, ZoneIngresses and ZoneEgresses
  (:mod:`.sender`), and their insights (:mod:`.insight_sync`).

Nothing local ever waits for global: the zone serves from its store, a local change is served
at once and goes up when global is reachable. When the connection fails or global stalls
(HTTP/2 keepalive pings go unanswered), the zone keeps what it has and dials again with
backoff; each stream then declares what it holds and only the differences travel.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import anyio
from envoy.config.core.v3.base_pb2 import Node
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import decode_grpc_message

import kuma
from kuma.insights import InsightStore
from kuma.metrics.kds import KdsTraffic
from kuma.store import Store

from . import insight_sync, mapping, receiver, sender, zone_status
from .limits import DEFAULT_MAX_MSG_SIZE, SizeLimitedCodec
from .outbox import Outbox
from .service import AUTHORIZATION, CLIENT_ID, KdsSyncServiceStub
from .sink import StoreSink

log = logging.getLogger(__name__)

#: A silent global is noticed after about this long plus the ping timeout.
_KEEPALIVE = 10.0
_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 5.0
#: A connection that lasted this long was fine: dial again soon after it ends.
_STEADY = 5.0


@dataclass(frozen=True)
class GlobalAddress:
    host: str
    port: int
    tls: bool


def parse_address(address: str) -> GlobalAddress:
    """``grpcs://host:port`` (checked by the configuration: kuma/cp/multizone_config.py)."""
    parts = urlsplit(address)
    return GlobalAddress(parts.hostname or "", parts.port or 5685, parts.scheme == "grpcs")


def client_tls(root_ca_file: str, skip_verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=root_ca_file or None)
    if skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context


def global_sink(store: Store) -> StoreSink:
    """A zone's sink for what global sends: replaces and deletes only global's copies, and
    refuses what a zone must not hold (kuma/kds/secrets.py)."""
    return StoreSink(
        store,
        mapping.global_kinds(),
        owns=mapping.from_global,
        replaceable=mapping.replaceable_on_zone,
        check=mapping.zone_check,
    )


@dataclass(frozen=True)
class ZoneClient:
    store: Store
    zone: str
    address: GlobalAddress
    #: The zone token's file, read on every connection (a replaced token is picked up).
    token_file: str
    tls: ssl.SSLContext | None
    #: This control plane's instance id (reported to global as Kuma's ``control-plane-id``).
    instance_id: str = ""
    #: The zone's insights, sent up with its resources (None: not sent).
    insights: InsightStore | None = None
    #: Counts the bytes the zone sends up (None: not counted).
    traffic: KdsTraffic | None = None
    #: No KDS message larger, either way (``multizone.zone.kds.maxMsgSize``, :mod:`.limits`).
    max_msg_size: int = DEFAULT_MAX_MSG_SIZE

    async def run(self) -> None:
        outbox = Outbox(self.store, partial(mapping.to_global, zone=self.zone))
        sink = global_sink(self.store)
        async with anyio.create_task_group() as tg:
            if self.insights is not None:
                feed = insight_sync.InsightFeed(self.insights, self.zone)
                tg.start_soon(feed.run, outbox, outbox.hold())
            tg.start_soon(outbox.run)
            backoff = _BACKOFF_FIRST
            while True:
                steady = await self._connect_once(outbox, sink)
                backoff = _BACKOFF_FIRST if steady else min(backoff * 2, _BACKOFF_MAX)
                await anyio.sleep(backoff)

    def node(self) -> Node:
        """What the zone tells global about itself (Kuma's node metadata: kuma/kds/zone_status)."""
        node = Node(id=self.zone)
        fields = node.metadata.fields
        fields[zone_status.METADATA_VERSION].struct_value.update(
            zone_status.zone_cp_version(kuma.__version__)
        )
        fields[zone_status.METADATA_CONFIG].string_value = zone_status.zone_cp_config(
            self.store.name
        )
        if self.instance_id:
            fields[zone_status.METADATA_CONTROL_PLANE_ID].string_value = self.instance_id
        return node

    def _metadata(self) -> dict[str, str]:
        metadata = {CLIENT_ID: self.zone}
        if self.token_file:
            token = Path(self.token_file).read_text().strip()
            metadata[AUTHORIZATION] = f"Bearer {token}"
        return metadata

    async def _connect_once(self, outbox: Outbox, sink: StoreSink) -> bool:
        """One connection's life; True if it lasted (the next attempt then comes soon)."""
        where = f"{self.address.host}:{self.address.port}"
        config = Configuration(_keepalive_time=_KEEPALIVE, _keepalive_timeout=_KEEPALIVE)
        channel = Channel(
            self.address.host,
            self.address.port,
            ssl=self.tls,
            config=config,
            codec=SizeLimitedCodec(self.max_msg_size),
        )
        stub = KdsSyncServiceStub(channel)
        started = anyio.current_time()
        ended: list[BaseException] = []
        streams: list[object] = []
        try:
            metadata = self._metadata()
            async with (
                stub.GlobalToZoneSync.open(metadata=metadata) as down,
                stub.ZoneToGlobalSync.open(metadata=metadata) as up,
            ):
                streams += [down, up]
                await down.send_request()
                await up.send_request()
                log.info("KDS: connected to global at %s as zone %s", where, self.zone)
                async with anyio.create_task_group() as tg:

                    async def until_ended(stream: Awaitable[None]) -> None:
                        try:
                            await stream
                        except Exception as exc:  # any failure: keep what we have, dial again
                            ended.append(exc)
                        tg.cancel_scope.cancel()

                    tg.start_soon(
                        until_ended,
                        receiver.take(
                            down, sink, mapping.global_kinds(), "global", node=self.node()
                        ),
                    )
                    offer = sender.offer(
                        up,
                        outbox,
                        mapping.ZONE_KINDS,
                        "global",
                        extra=insight_sync.UP_URLS,
                        observer=self.traffic.observer("global") if self.traffic else None,
                        max_msg_size=self.max_msg_size,
                    )
                    tg.start_soon(until_ended, offer)
        except Exception as exc:  # refused, unreachable, broken: keep what we have, dial again
            ended.append(exc)
        finally:
            channel.close()
        if ended:
            refusals = [why for why in map(_refusal, streams) if why]
            why = refusals[0] if refusals else _describe(ended[0])
            log.warning("KDS: connection to global at %s ended: %s", where, why)
        return anyio.current_time() - started > _STEADY


def _refusal(stream: object) -> str | None:
    """The status of a refused stream. grpclib's server resets a stream it refuses right after
    its trailers-only answer; the client then reports only the reset, so the status (say,
    UNAUTHENTICATED and why) is read from the headers that did arrive."""
    headers = getattr(getattr(stream, "_stream", None), "headers", None) or ()
    found = dict(headers)
    code = found.get("grpc-status")
    if code is None or code == "0":
        return None
    try:
        name = Status(int(code)).name
    except ValueError:
        name = code
    return f"{name}: {decode_grpc_message(found.get('grpc-message', ''))}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, GRPCError):
        return f"{exc.status.name}: {exc.message}"
    return str(exc) or type(exc).__name__
