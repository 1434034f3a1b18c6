"""A zone's proxy insights go up to global (Kuma syncs DataplaneInsight, ZoneIngressInsight and
ZoneEgressInsight zone to global), so global's API and ``kumactl inspect dataplanes|
zoneingresses|zoneegresses`` show a zone's proxies Online with their subscriptions.

Insights are not resources (kuma/insights/store.py says why), so they are not in the zone's
store watch: :class:`InsightFeed` follows the zone's insight store and publishes each insight
into the zone's :class:`~.outbox.Outbox` beside its resources; global's :class:`InsightSink`
keeps them through :class:`~kuma.insights.ReceivedInsights` (in global's insight store when it
can take a whole insight: memory, etcd), which its API reads.

- **What travels**: one delta resource per proxy of type :data:`INSIGHT_URL` (one type for the
  three Kuma kinds: the zone keeps a zone proxy's insight under mesh ``""``), named
  ``<mesh>/<name as global stores the proxy>`` (Kuma's hashed name of mesh, name and zone, as
  :func:`~.mapping.to_global` names the Dataplane); the body is ``{"mesh", "name", "insight"}``
  with Kuma's JSON of the insight, its version the body's hash.
- **Volume**: the zone's flusher already writes an insight at most once per
  ``dataplaneStatusFlushInterval``, and only when it changed; the feed coalesces the changes
  of a flush into one pass, and the outbox announces only entries whose version changed; the
  delta stream then sends only those (and after a reconnect only what differs).
- **Stats wait, connections do not**: most flushes change only a subscription's counters
  (every response and ACK counts), and they share the stream with the zone's resources: at
  10,000 sidecars some 75-160 KB of insights went up per cross-zone change, on global's CPU
  while the change crossed it (benchmarks/RESULTS.md). A change that leaves the insight
  the same but for its subscriptions' ``status`` (counters, last update time) goes up with
  the next stats pass, every :data:`STATS_INTERVAL` seconds, with the latest counters, in
  slices of :data:`STATS_SLICE` insights :data:`STATS_GAP` seconds apart (a resource change
  then waits behind one slice on the stream and in global's receiver, not behind all); any
  other change (a proxy connecting, disconnecting, another Envoy version) goes at once, and
  a deleted insight is withdrawn at once. Global's counters of a zone proxy lag by up to that
  interval more than the zone's own.
- **Lifetime**: an insight the zone deletes (its Dataplane went) is removed on global; global
  also forgets it when the zone's Dataplane is deleted there (kuma/insights/service.py).
- Global checks that a zone names an insight as it would name that zone's proxy: a zone
  cannot speak for another zone's proxies.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable

import anyio
import anyio.lowlevel
import msgspec
import orjson

from kuma import jsonbytes
from kuma.insights import (
    DataplaneInsight,
    InsightStore,
    ListsInsights,
    NotifiesInsights,
    ReceivedInsights,
)
from kuma.insights.model import (
    MAX_ONLINE,
    MAX_SUBSCRIPTIONS,
    SubscriptionStatus,
    insight_from_json,
    insight_json,
)
from kuma.resources import ResourceKey
from kuma.xds.snapshot import VersionedResource, content_version

from . import codec
from .codec import KdsDecodeError
from .mapping import hashed_name
from .outbox import Outbox
from .sink import Sink

log = logging.getLogger(__name__)

INSIGHT_URL = codec.TYPE_PREFIX + "DataplaneInsight"
#: What ZoneToGlobalSync carries beyond the zone's resource kinds (both ends use it).
UP_URLS = (INSIGHT_URL,)
#: A received insight holds at most what the zone's own would (kuma/insights/model.py).
_MAX_RECEIVED = MAX_SUBSCRIPTIONS + MAX_ONLINE
#: How often a zone sends the insights whose counters alone changed (seconds): three of the
#: zone's default flush intervals, so at most one insight in three flushes of a busy proxy.
STATS_INTERVAL = 30.0
#: Insights per slice of a stats pass, and the pause between slices (seconds): 2,000 a second,
#: some 80 KB per slice.
STATS_SLICE = 100
STATS_GAP = 0.05
_NO_STATUS = SubscriptionStatus()


def _without_stats(insight: DataplaneInsight) -> bytes:
    """A digest of ``insight`` with its subscriptions' counters left out."""
    subscriptions = tuple(
        msgspec.structs.replace(s, status=_NO_STATUS) for s in insight.subscriptions
    )
    shape = msgspec.structs.replace(insight, subscriptions=subscriptions)
    return hashlib.blake2b(msgspec.msgpack.encode(shape), digest_size=16).digest()


def wire_name(mesh: str, name: str, zone: str) -> str:
    return f"{mesh}/{hashed_name(mesh, name, zone)}"


def encode(mesh: str, name: str, zone: str, insight: DataplaneInsight) -> VersionedResource:
    """The zone's insight of its proxy ``mesh``/``name`` as it travels."""
    doc = {"mesh": mesh, "name": name, "insight": insight_json(insight)}
    body = jsonbytes.dumps(doc, sort_keys=True)  # kept while offered
    return VersionedResource(INSIGHT_URL, wire_name(mesh, name, zone), content_version(body), body)


def decode(zone: str, wire: str, body: bytes) -> tuple[str, str, DataplaneInsight]:
    """``(mesh, name as global stores it, insight)``; KdsDecodeError (naming it) otherwise."""
    try:
        doc = orjson.loads(body)
        if not isinstance(doc, dict):
            raise ValueError("expected an object")
        mesh, name = doc.get("mesh"), doc.get("name")
        if not isinstance(mesh, str) or not isinstance(name, str) or not name:
            raise ValueError("mesh and name must be strings")
        insight = insight_from_json(doc.get("insight"))
    except ValueError as exc:  # orjson's JSONDecodeError is one too
        raise KdsDecodeError(f"insight {wire[:200]!r}: {exc}") from None
    if wire != wire_name(mesh, name, zone):
        raise KdsDecodeError(f"insight {wire[:200]!r}: not the name of {mesh}/{name} of {zone}")
    if len(insight.subscriptions) > _MAX_RECEIVED:
        raise KdsDecodeError(f"insight {wire[:200]!r}: more than {_MAX_RECEIVED} subscriptions")
    return mesh, wire.partition("/")[2], insight


class InsightFeed:
    """On a zone: its insight store's insights, published to the outbox as they change."""

    def __init__(
        self,
        store: InsightStore,
        zone: str,
        *,
        stats_interval: float = STATS_INTERVAL,
        stats_slice: int = STATS_SLICE,
    ) -> None:
        self._store = store
        self._zone = zone
        self._stats_interval = stats_interval
        self._stats_slice = stats_slice
        self._dirty: set[tuple[str, str]] = set()
        self._wake = anyio.Event()
        #: (mesh, name) -> the last published insight without its counters (a digest).
        self._shapes: dict[tuple[str, str], bytes] = {}
        #: Published insights whose counters alone changed since: for the next stats pass.
        self._stats_due: set[tuple[str, str]] = set()
        #: Insights published (encoded and handed to the outbox), and changes left for a stats
        #: pass, for tests and measurements.
        self.published = 0
        self.deferred = 0

    async def run(self, outbox: Outbox, release: Callable[[], None]) -> None:
        """Publish until cancelled; ``release`` (from :meth:`Outbox.hold`) once the snapshot is
        in, so no stream tells global to drop what was merely not offered yet."""
        store = self._store
        if not isinstance(store, NotifiesInsights) or not isinstance(store, ListsInsights):
            log.warning("KDS: the %s insight store cannot be followed: none go up", store.name)
            release()
            return
        stop = store.on_insight_changed(self._changed)
        try:
            self._publish(outbox, list(store.keys()))
            release()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._stats_passes, outbox)
                while True:
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    # Everything one flush changed goes in one pass (the flusher batches).
                    dirty, self._dirty = self._dirty, set()
                    self._publish(outbox, dirty, defer_stats=True)
                    await anyio.lowlevel.checkpoint()
        finally:
            stop()
            release()

    async def _stats_passes(self, outbox: Outbox) -> None:
        while True:
            await anyio.sleep(self._stats_interval)
            due = sorted(self._stats_due)
            for start in range(0, len(due), self._stats_slice):
                # What a connection changed meanwhile went already, or is due again.
                part = [
                    key for key in due[start : start + self._stats_slice] if key in self._stats_due
                ]
                self._stats_due.difference_update(part)
                self._publish(outbox, part)
                await anyio.sleep(STATS_GAP)

    def _changed(self, mesh: str, name: str) -> None:
        self._dirty.add((mesh, name))
        self._wake.set()

    def _publish(
        self, outbox: Outbox, keys: Iterable[tuple[str, str]], *, defer_stats: bool = False
    ) -> None:
        for mesh, name in keys:
            key = (mesh, name)
            insight = self._store.get(mesh, name)
            encoded: tuple[VersionedResource, ...] = ()
            if insight is None:
                self._shapes.pop(key, None)
                self._stats_due.discard(key)
            else:
                shape = _without_stats(insight)
                if defer_stats and self._shapes.get(key) == shape:
                    self._stats_due.add(key)
                    self.deferred += 1
                    continue
                self._shapes[key] = shape
                self._stats_due.discard(key)
                encoded = (encode(mesh, name, self._zone, insight),)
            # The outbox announces it only if its version changed.
            outbox.publish(ResourceKey(INSIGHT_URL, mesh, name), encoded)
            self.published += 1


class InsightSink:
    """On global: one zone's insights into :class:`ReceivedInsights`."""

    def __init__(self, received: ReceivedInsights, zone: str) -> None:
        self._received = received
        self._zone = zone

    def held(self) -> dict[str, str]:
        return {f"{mesh}/{name}": v for (mesh, name), v in self._received.held(self._zone).items()}

    async def apply(self, resources: Iterable[object], removed: Iterable[str]) -> list[str]:
        errors: list[str] = []
        for item in resources:
            wire: str = item.name  # type: ignore[attr-defined]
            body: bytes = item.resource.value  # type: ignore[attr-defined]
            try:
                mesh, name, insight = decode(self._zone, wire, body)
            except KdsDecodeError as exc:
                errors.append(str(exc))
                continue
            await self._received.put(self._zone, mesh, name, content_version(body), insight)
        for wire in removed:
            mesh, _, name = wire.partition("/")
            await self._received.remove(self._zone, mesh, name)
        return errors


class WithInsights:
    """Global's sink for one zone: its resources (a :class:`~.sink.StoreSink`) and insights."""

    def __init__(self, resources: Sink, insights: InsightSink) -> None:
        self._resources = resources
        self._insights = insights

    async def held(self) -> dict[str, dict[str, str]]:
        return {**await self._resources.held(), INSIGHT_URL: self._insights.held()}

    async def apply(
        self, type_url: str, resources: Iterable[object], removed: Iterable[str]
    ) -> str:
        if type_url != INSIGHT_URL:
            return await self._resources.apply(type_url, resources, removed)
        errors = await self._insights.apply(resources, removed)
        for line in errors:
            log.warning("KDS: not applied: %s", line)
        return "; ".join(errors)
