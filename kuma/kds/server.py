"""Global's KDS server (``multizone.global.kds.grpcPort``, 5685, TLS with the control plane's
certificate): zones dial in, authenticate (:mod:`.auth`), then

- on ``GlobalToZoneSync`` global offers its Meshes, Secrets, policies and the other zones'
  ZoneIngresses (:mod:`.sender`);
- on ``ZoneToGlobalSync`` global takes the zone's Dataplanes, ZoneIngresses and ZoneEgresses
  into its store (:mod:`.receiver`), under the zone's labels and hashed names, and their
  insights into its received insights (:mod:`.insight_sync`).

A stream ends with UNAUTHENTICATED (and the reason) when its zone is refused or its token
ends, with PERMISSION_DENIED when its Zone is disabled, and with INVALID_ARGUMENT when the
zone breaks the protocol. Global records each zone and its connections (:mod:`.zone_status`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from ssl import SSLContext

import anyio
from anyio.abc import TaskStatus
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server

from kuma.insights import ReceivedInsights
from kuma.metrics.kds import KdsTraffic
from kuma.store import Store
from kuma.xds.server.authn import StreamGrant, Unauthenticated
from kuma.xds.server.listener import listening
from kuma.xds.server.node import InvalidRequest

from . import insight_sync, mapping, receiver, sender
from .auth import ZoneAuthenticator
from .limits import DEFAULT_MAX_MSG_SIZE, SizeLimitedCodec
from .outbox import Outbox
from .service import KdsSyncServiceBase, ServerStream
from .sink import Sink, StoreSink
from .zone_gate import ZoneGate
from .zone_status import DISABLED, Ending, ZoneDisabled, ZoneStatus

log = logging.getLogger(__name__)


def zone_sink(store: Store, zone: str, received: ReceivedInsights | None = None) -> Sink:
    """Global's sink for one zone: only that zone's resources, named as global names them
    (and its insights into ``received``, when given)."""
    resources = StoreSink(
        store,
        mapping.ZONE_KINDS,
        owns=lambda resource: mapping.from_zone(resource, zone),
        check=lambda resource: mapping.zone_violation(resource, zone),
    )
    if received is None:
        return resources
    return insight_sync.WithInsights(resources, insight_sync.InsightSink(received, zone))


class KdsServer(KdsSyncServiceBase):
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        authenticator: ZoneAuthenticator,
        zones: ZoneStatus | None = None,
        received: ReceivedInsights | None = None,
        traffic: KdsTraffic | None = None,
        max_msg_size: int | None = None,
    ) -> None:
        self._store = store
        self._traffic = traffic
        #: No response larger (``multizone.global.kds.maxMsgSize``, :mod:`.limits`).
        self._max_msg_size = max_msg_size
        #: The zones' insights (global's API reads them; kuma/insights/service.py).
        self._received = received if received is not None else ReceivedInsights()
        self._outbox = outbox
        self._authenticator = authenticator
        self._zones = zones

    async def GlobalToZoneSync(self, stream: ServerStream) -> None:
        await self._serve(stream, "GlobalToZoneSync", self._down)

    async def ZoneToGlobalSync(self, stream: ServerStream) -> None:
        await self._serve(stream, "ZoneToGlobalSync", self._up)

    async def _down(self, stream: ServerStream, zone: str) -> None:
        kinds = mapping.global_kinds()
        traffic = self._traffic.observer(zone) if self._traffic is not None else None
        offer = partial(
            sender.offer,
            stream,
            self._outbox,
            kinds,
            f"zone {zone}",
            zone=zone,
            max_msg_size=self._max_msg_size,
        )
        if self._zones is None:
            await offer(observer=traffic)
            return
        async with self._zones.subscription(zone) as tracker:
            await offer(observer=sender.Observers(tracker, traffic))

    async def _up(self, stream: ServerStream, zone: str) -> None:
        await receiver.take(
            stream,
            zone_sink(self._store, zone, self._received),
            mapping.ZONE_KINDS,
            f"zone {zone}",
            extra=insight_sync.UP_URLS,
        )

    async def _serve(
        self,
        stream: ServerStream,
        method: str,
        run: Callable[[ServerStream, str], Awaitable[None]],
    ) -> None:
        try:
            zone, grant = self._authenticator.authenticate(stream.metadata or {})
        except Unauthenticated as refused:
            raise GRPCError(Status.UNAUTHENTICATED, refused.reason) from None
        ending: Ending | None = None
        try:
            if self._zones is not None:
                ending = await self._zones.admit(zone)
        except ZoneDisabled as refusal:
            grant.release()
            log.warning("KDS: refusing %s: %s", method, refusal)
            raise GRPCError(Status.PERMISSION_DENIED, str(refusal)) from None
        except BaseException:
            grant.release()
            raise
        log.info("KDS: zone %s opened %s", zone, method)
        ended: str | None = None
        cut_off = ""
        failed: list[InvalidRequest | GRPCError] = []
        try:
            async with anyio.create_task_group() as tg:

                async def until_grant_ends(grant: StreamGrant) -> None:
                    nonlocal ended
                    ended = await grant.wait_ended()
                    tg.cancel_scope.cancel()

                async def until_cut_off(ending: Ending) -> None:
                    nonlocal cut_off
                    cut_off = await ending.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(until_grant_ends, grant)
                if ending is not None:
                    tg.start_soon(until_cut_off, ending)
                try:
                    await run(stream, zone)
                except (InvalidRequest, GRPCError) as exc:
                    # Caught here: out of the task group it would be an ExceptionGroup, which
                    # grpclib answers as an unknown application error.
                    failed.append(exc)
                tg.cancel_scope.cancel()
        finally:
            grant.release()
            log.info("KDS: zone %s closed %s", zone, method)
        for error in failed:
            if isinstance(error, InvalidRequest):
                log.warning("KDS: ending %s of zone %s: %s", method, zone, error)
                raise GRPCError(Status.INVALID_ARGUMENT, str(error)) from None
            log.warning(
                "KDS: ending %s of zone %s: %s: %s", method, zone, error.status.name, error.message
            )
            raise error
        if ended is not None:
            raise GRPCError(Status.UNAUTHENTICATED, f"zone {zone}: {ended}")
        if cut_off == DISABLED:
            log.warning("KDS: ending %s: zone %s was disabled", method, zone)
            raise GRPCError(Status.PERMISSION_DENIED, ZoneDisabled.message(zone))
        if cut_off:
            log.info("KDS: ending %s: the Zone of %s was deleted", method, zone)
            raise GRPCError(Status.UNAVAILABLE, f"the Zone of {zone} was deleted: reconnect")


def global_outbox(store: Store) -> Outbox:
    """What global offers every zone: its resources shaped for zones, a zone's own ingresses
    withheld from it, a disabled zone's ingresses held back from all (Kuma's filters)."""
    return Outbox(store, mapping.to_zone, mapping.withheld_from, ZoneGate())


async def serve_kds(
    store: Store,
    authenticator: ZoneAuthenticator,
    host: str,
    port: int,
    ssl: SSLContext | None,
    *,
    zones: ZoneStatus | None = None,
    received: ReceivedInsights | None = None,
    traffic: KdsTraffic | None = None,
    max_msg_size: int = DEFAULT_MAX_MSG_SIZE,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve KDS on ``host:port`` until cancelled; ``task_status.started`` gets the port.
    ``zones``: where zones and their connections are recorded (None: not recorded);
    ``received``: where the zones' insights go (None: kept by the server alone);
    ``traffic``: counts the bytes sent to each zone (None: not counted);
    ``max_msg_size``: no message larger, either way (:mod:`.limits`)."""
    outbox = global_outbox(store)
    service = KdsServer(
        store, outbox, authenticator, zones, received, traffic, max_msg_size=max_msg_size
    )
    server = Server([service], codec=SizeLimitedCodec(max_msg_size))
    async with anyio.create_task_group() as tg:
        if zones is not None:
            await tg.start(zones.run)  # following the Zones before any zone is admitted
        tg.start_soon(outbox.run)
        async with listening(server, host, port, ssl, what="KDS server") as bound:
            task_status.started(bound)
            await anyio.sleep_forever()
