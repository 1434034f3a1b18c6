"""Global's record of its zones (Kuma's ``Zone`` and ``ZoneInsight``, pkg/kds/global and
pkg/kds/status): what ``kumactl get|inspect zones`` and ``/zones/_overview`` show.

- A zone's ``Zone`` is created, ``enabled: true``, when it first connects (Kuma's
  ``createZoneIfAbsent``). The store's create is the arbiter: global instances sharing one
  etcd race, one creates, the others see it exists. A zone whose Zone says ``enabled: false``
  is refused before anything is sent or taken.
- Each ``GlobalToZoneSync`` stream is one ``KDSSubscription`` in the zone's ``ZoneInsight``:
  written when the stream opens, when the zone reports its version (its first request's node
  metadata, Kuma's ``version``/``config`` fields), every ``zoneInsightFlushInterval`` while
  counters change, and with its disconnect time when the stream ends.
- A global instance that dies cannot write that disconnect time. Every instance therefore
  closes, at start and then every flush interval, the online subscriptions of instances that
  are not alive (``live``: this instance alone on a store of one, the etcd lease keys
  otherwise), so no zone stays "Online" forever after a global crash.

Writes go to the resource store with compare-and-swap and a few retries: several instances
may write one zone's insight (a zone connected to two of them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus
from google.protobuf.json_format import MessageToDict

import kuma
from kuma.resources import ResourceKey, Zone, ZoneInsight
from kuma.resources.zone_insight import (
    KdsServiceStats,
    KdsSubscription,
    KdsSubscriptionStatus,
    KdsVersion,
    close_where,
    replace_subscription,
)
from kuma.store import ConflictError, NotFoundError, Operation, Store, StoreError, Synced

from . import codec

log = logging.getLogger(__name__)

#: Kuma's node metadata keys (pkg/kds/types.go).
METADATA_VERSION = "version"
METADATA_CONFIG = "config"
METADATA_CONTROL_PLANE_ID = "control-plane-id"
_RETRIES = 5

Clock = Callable[[], datetime]
LiveInstances = Callable[[], Awaitable[frozenset[str]]]


def _now() -> datetime:
    return datetime.now(UTC)


class ZoneDisabled(Exception):
    """The zone's Zone resource says ``enabled: false``."""

    @staticmethod
    def message(zone: str) -> str:
        return f"zone {zone} is disabled (its Zone has enabled: false)"


class SubscriptionTracker:
    """The counters of one ``GlobalToZoneSync`` stream (a :class:`~.sender.Observer`)."""

    def __init__(self, subscription: KdsSubscription, clock: Clock) -> None:
        self._clock = clock
        self.subscription = subscription
        self._stats: dict[str, list[int]] = {}
        self._last_update: datetime | None = None
        #: Set when something changed since the last snapshot.
        self.dirty = anyio.Event()
        self._version_seen = False

    def on_request(self, request: Any) -> None:
        if not self._version_seen and request.HasField("node"):
            self._version_seen = True
            self._take_node(request.node)
        if request.response_nonce:
            counters = self._counters(request.type_url)
            counters[2 if request.HasField("error_detail") else 1] += 1
            self._touch()

    def on_response(self, response: Any) -> None:
        self._counters(response.type_url)[0] += 1
        self._touch()

    def _counters(self, type_url: str) -> list[int]:
        return self._stats.setdefault(type_url.removeprefix(codec.TYPE_PREFIX), [0, 0, 0])

    def _touch(self) -> None:
        self._last_update = self._clock()
        self.dirty.set()

    def _take_node(self, node: Any) -> None:
        fields = node.metadata.fields
        version: KdsVersion | None = None
        if METADATA_VERSION in fields:
            raw = MessageToDict(fields[METADATA_VERSION].struct_value)
            try:
                version = msgspec.convert(raw, KdsVersion, strict=True)
            except msgspec.ValidationError as exc:
                log.warning("KDS: zone %s: unreadable version metadata: %s", node.id[:64], exc)
        if version is not None and version.kuma_cp is not None:
            compatible = compatible_versions(kuma.__version__, version.kuma_cp.version)
            version = KdsVersion(
                kuma_cp=msgspec.structs.replace(
                    version.kuma_cp, kuma_cp_global_compatible=compatible
                )
            )

        def text(key: str) -> str:
            return fields[key].string_value[:4096] if key in fields else ""

        self.subscription = msgspec.structs.replace(
            self.subscription,
            version=version,
            config=text(METADATA_CONFIG),
            zone_instance_id=text(METADATA_CONTROL_PLANE_ID)[:253],
        )
        self.dirty.set()

    def snapshot(self) -> KdsSubscription:
        self.dirty = anyio.Event()
        stats = {
            kind: KdsServiceStats(
                responses_sent=c[0], responses_acknowledged=c[1], responses_rejected=c[2]
            )
            for kind, c in sorted(self._stats.items())
        }
        total = KdsServiceStats(
            responses_sent=sum(c[0] for c in self._stats.values()),
            responses_acknowledged=sum(c[1] for c in self._stats.values()),
            responses_rejected=sum(c[2] for c in self._stats.values()),
        )
        status = KdsSubscriptionStatus(last_update_time=self._last_update, total=total, stat=stats)
        # Kuma's generation: raised with every write of the subscription.
        generation = self.subscription.generation + 1
        self.subscription = msgspec.structs.replace(self.subscription, generation=generation)
        return msgspec.structs.replace(self.subscription, status=status)


class ZoneStatus:
    def __init__(
        self,
        store: Store,
        instance_id: str,
        *,
        flush_interval: float = 10.0,
        live: LiveInstances | None = None,
        clock: Clock = _now,
    ) -> None:
        self._store = store
        self.instance_id = instance_id
        self._flush_interval = flush_interval
        self.live = live
        self._clock = clock
        #: Admitted zones -> when their streams must end (followed from the store by
        #: :meth:`run`).
        self._ending: dict[str, Ending] = {}
        #: Disconnect writes under way (held: the event loop keeps only weak references).
        self._closing: set[asyncio.Future[None]] = set()

    async def admit(self, zone: str) -> Ending:
        """Create the zone's Zone if it has none; ZoneDisabled if it is disabled. The answer
        says when the zone's streams must end (registered before this returns, so a change
        of the Zone right after admission is not missed)."""
        key = ResourceKey(Zone.TYPE, "", zone)
        try:
            stored = await self._store.get(key)
        except NotFoundError:
            try:
                await self._store.create(Zone(name=zone, enabled=True))
                log.info("KDS: created Zone %s (its first connection)", zone)
                return self._ending.setdefault(zone, Ending())
            except ConflictError:
                stored = await self._store.get(key)  # another global instance created it
        assert isinstance(stored.resource, Zone)
        if not stored.resource.is_enabled:
            raise ZoneDisabled(ZoneDisabled.message(zone))
        return self._ending.setdefault(zone, Ending())

    @asynccontextmanager
    async def subscription(self, zone: str) -> AsyncIterator[SubscriptionTracker]:
        """Track one ``GlobalToZoneSync`` stream of ``zone`` while the block runs."""
        tracker = SubscriptionTracker(
            KdsSubscription(
                id=str(uuid.uuid4()),
                global_instance_id=self.instance_id,
                connect_time=self._clock(),
                auth_token_provided=True,
            ),
            self._clock,
        )
        await self._put(zone, tracker.snapshot())
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._flush, zone, tracker)
                try:
                    yield tracker
                finally:
                    tg.cancel_scope.cancel()
        finally:
            closed = msgspec.structs.replace(tracker.snapshot(), disconnect_time=self._clock())
            # grpclib cancels a stream's handler natively (task.cancel()) when the connection
            # is lost, which an anyio shield does not hold off: the disconnect is written by a
            # task of its own, which that cancellation does not reach, so a zone that vanishes
            # is not left online.
            write = asyncio.ensure_future(asyncio.wait_for(self._put(zone, closed), 10))
            self._closing.add(write)
            write.add_done_callback(self._closing.discard)
            await asyncio.shield(write)

    async def _flush(self, zone: str, tracker: SubscriptionTracker) -> None:
        # The version arrives with the first request: written at once; counters at most once
        # per interval (Kuma's zoneInsightFlushInterval).
        while True:
            await tracker.dirty.wait()
            await self._put(zone, tracker.snapshot())
            await anyio.sleep(self._flush_interval)

    async def _put(self, zone: str, subscription: KdsSubscription) -> None:
        await self._change(zone, lambda subs: (replace_subscription(subs, subscription), True))

    async def _change(
        self,
        zone: str,
        change: Callable[[tuple[KdsSubscription, ...]], tuple[tuple[KdsSubscription, ...], bool]],
    ) -> None:
        key = ResourceKey(ZoneInsight.TYPE, "", zone)
        for _ in range(_RETRIES):
            try:
                try:
                    stored = await self._store.get(key)
                except NotFoundError:
                    subscriptions, changed = change(())
                    if changed and await self._zone_exists(zone):
                        await self._store.create(
                            ZoneInsight(name=zone, subscriptions=subscriptions)
                        )
                    return
                assert isinstance(stored.resource, ZoneInsight)
                subscriptions, changed = change(stored.resource.subscriptions)
                if changed:
                    insight = msgspec.structs.replace(stored.resource, subscriptions=subscriptions)
                    await self._store.update(insight, version=stored.meta.version)
                return
            except (ConflictError, NotFoundError):
                continue  # another instance wrote it meanwhile: read again
            except StoreError as exc:
                log.warning("KDS: could not write the ZoneInsight of %s: %s", zone, exc)
                return
        log.warning("KDS: the ZoneInsight of %s kept changing; this update is dropped", zone)

    async def _zone_exists(self, zone: str) -> bool:
        # A deleted Zone's insight is not made again by a stream that was still closing.
        try:
            await self._store.get(ResourceKey(Zone.TYPE, "", zone))
        except NotFoundError:
            return False
        return True

    async def sweep(self) -> None:
        """Close the online subscriptions of global instances that are not alive; drop the
        insights of zones whose Zone is gone."""
        alive = {self.instance_id}
        if self.live is not None:
            alive |= await self.live()
        page = await self._store.list(ZoneInsight.TYPE)
        zones = {item.resource.name for item in (await self._store.list(Zone.TYPE)).items}
        for item in page.items:
            if item.resource.name not in zones:
                await self._forget(item.resource.name)
        now = self._clock()

        def gone(subscription: KdsSubscription) -> bool:
            return subscription.global_instance_id not in alive

        for item in page.items:
            assert isinstance(item.resource, ZoneInsight)
            if item.resource.name not in zones or not any(
                s.online and s.global_instance_id not in alive for s in item.resource.subscriptions
            ):
                continue
            log.info(
                "KDS: zone %s: closing subscriptions of stopped global instances", item.key.name
            )
            await self._change(
                item.resource.name,
                lambda subs: close_where(subs, gone, now),
            )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow the Zones (started once the store's snapshot is read: start this before
        admitting zones, so no change of an admitted zone's Zone is missed); sweep now and then
        every flush interval; until cancelled."""
        async with anyio.create_task_group() as tg:
            await tg.start(self._follow_zones)
            task_status.started()
            while True:
                try:
                    await self.sweep()
                except StoreError as exc:
                    log.warning("KDS: could not check zone subscriptions: %s", exc)
                await anyio.sleep(self._flush_interval)

    def _end(self, zone: str, reason: str) -> None:
        ending = self._ending.pop(zone, None)
        if ending is not None:
            ending.reason = reason
            ending.event.set()

    async def _follow_zones(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with self._store.watch() as events:
            async for item in events:
                if isinstance(item, Synced):
                    task_status.started()
                    continue
                if item.key.type != Zone.TYPE:
                    continue
                zone = item.key.name
                resource = item.resource
                if item.operation is Operation.DELETE:
                    self._end(zone, DELETED)
                    await self._forget(zone)
                elif isinstance(resource, Zone) and not resource.is_enabled:
                    self._end(zone, DISABLED)

    async def _forget(self, zone: str) -> None:
        """A deleted Zone's insight goes with it (Kuma: its owner)."""
        key = ResourceKey(ZoneInsight.TYPE, "", zone)
        try:
            await self._store.delete(key, version=(await self._store.get(key)).meta.version)
        except NotFoundError:
            return
        except StoreError as exc:  # another instance deleted it, or rewrote it: the sweep retries
            log.info("KDS: the ZoneInsight of deleted zone %s stays for now: %s", zone, exc)


#: Why a zone's open streams are ended.
DISABLED = "disabled"
DELETED = "deleted"


class Ending:
    """When an admitted zone's streams must end, and why: its Zone says ``enabled: false``
    (:data:`DISABLED`) or was deleted (:data:`DELETED`: the zone reconnects and its Zone is
    made again)."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.reason = ""

    async def wait(self) -> str:
        await self.event.wait()
        return self.reason


def compatible_versions(global_version: str, zone_version: str) -> bool:
    """Kuma's DeploymentVersionCompatible: same major, the zone at most two minors apart; a
    version that does not parse counts as a development build (compatible), as in Kuma."""
    try:
        ours = [int(p) for p in global_version.split(".")[:2]]
        theirs = [int(p) for p in zone_version.lstrip("v").split(".")[:2]]
    except ValueError:
        return True
    if len(ours) != 2 or len(theirs) != 2:
        return True
    return ours[0] == theirs[0] and abs(ours[1] - theirs[1]) <= 2


def zone_cp_version(version: str) -> dict[str, Any]:
    """The node metadata value a zone reports (Kuma's ``version`` struct)."""
    return {"kumaCp": {"version": version, "gitTag": "", "gitCommit": "", "buildDate": ""}}


def zone_cp_config(store_type: str) -> str:
    """The configuration a zone reports: only the store type (the BACKEND column); Kuma sends
    its whole configuration, which may hold addresses and file paths global has no use for."""
    return json.dumps({"store": {"type": store_type}})
