"""Counting what happens on every ADS stream: the live half of DataplaneInsight.

:class:`InsightTracker` is a :class:`kuma.xds.server.StreamObserver`. Each stream gets a
subscription (a fresh id, this instance's id, its connect time, the proxy's versions) whose
counters every response, ACK and NACK bumps. The hot path is a dict lookup and a few integer
increments; nothing is rendered or copied until the flusher asks (:meth:`take_dirty`) or the
API reads (:meth:`live`).

The server reports responses, ACKs and NACKs by node id, not by stream. A proxy normally has one
stream; while a reconnecting Envoy briefly holds two (the new one opened before the old one is
seen closed), they are counted on the newest open one.

A closed stream stays here, with its disconnect time, until the flusher has written it
(:meth:`forget`), so a read never sees a proxy go back online between close and flush.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kuma.xds.server.observer import Flavour
from kuma.xds.server.tally import Tally
from kuma.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

from .model import (
    DiscoveryServiceStats,
    DiscoverySubscription,
    MtlsInsight,
    SubscriptionStatus,
    Version,
)

Clock = Callable[[], float]
#: node id → the workload certificate this instance holds for the proxy (kuma/mtls/insight.py).
MtlsOf = Callable[[str], MtlsInsight | None]


#: Most fleets run a handful of Envoy and kuma-dp builds: every stream of one shares one
#: ``Version`` (~0.4 KB per connected proxy as a copy of its own). Never mutated here or by the
#: readers (snapshots and JSON read it). Bounded: past the limit, versions are copied.
_VERSIONS: dict[tuple[tuple[str, tuple[tuple[str, str], ...]], ...], Version] = {}
_VERSIONS_KEPT = 256


def _shared_version(version: Mapping[str, Mapping[str, str]]) -> Version:
    key = tuple((part, tuple(fields.items())) for part, fields in version.items())
    shared = _VERSIONS.get(key)
    if shared is None:
        shared = {part: dict(fields) for part, fields in version.items()}
        if len(_VERSIONS) < _VERSIONS_KEPT:
            _VERSIONS[key] = shared
    return shared


#: A subscription's counters, one flat list (one object per stream, not five): responses sent,
#: acknowledged and rejected in total at 0-2, then the same three per xDS type at its offset.
SENT, ACKED, REJECTED = 0, 1, 2
_OFFSETS: dict[str, int] = {CLUSTER: 3, ENDPOINT: 6, LISTENER: 9, ROUTE: 12}
_COUNTERS = 15


def _stats(counts: list[int], offset: int) -> DiscoveryServiceStats:
    return DiscoveryServiceStats(
        counts[offset + SENT], counts[offset + ACKED], counts[offset + REJECTED]
    )


class LiveSubscription:
    """One stream's live subscription: mutated in place by the observer calls, copied into a
    frozen :class:`DiscoverySubscription` by :meth:`snapshot` only when it is written or read."""

    __slots__ = (
        "connect_time",
        "counts",
        "dirty",
        "disconnect_time",
        "id",
        "instance_id",
        "last_update",
        "mesh",
        "mtls_of",
        "name",
        "node_id",
        "stream_id",
        "version",
    )

    def __init__(self, stream_id: int, node_id: str, instance_id: str, now: float) -> None:
        self.stream_id = stream_id
        self.instance_id = instance_id
        self.node_id = node_id
        # The Dataplane's key; the server has checked the node id is ``<mesh>.<name>``.
        self.mesh, _, self.name = node_id.partition(".")
        self.id = str(uuid.uuid4())
        self.connect_time = now
        self.disconnect_time: float | None = None
        # Kuma stamps the status at connect time too (NewSubscriptionStatus(now)).
        self.last_update = now
        self.counts = [0] * _COUNTERS
        self.version: Version = {}
        self.dirty = False
        self.mtls_of: MtlsOf | None = None

    def snapshot(self) -> DiscoverySubscription:
        counts = self.counts
        status = SubscriptionStatus(
            last_update_time=self.last_update,
            total=_stats(counts, 0),
            cds=_stats(counts, _OFFSETS[CLUSTER]),
            eds=_stats(counts, _OFFSETS[ENDPOINT]),
            lds=_stats(counts, _OFFSETS[LISTENER]),
            rds=_stats(counts, _OFFSETS[ROUTE]),
        )
        return DiscoverySubscription(
            id=self.id,
            control_plane_instance_id=self.instance_id,
            connect_time=self.connect_time,
            disconnect_time=self.disconnect_time,
            status=status,
            version=self.version,
            # Only an open stream's instance knows the proxy's certificate.
            mtls=(
                self.mtls_of(self.node_id)
                if self.mtls_of is not None and self.disconnect_time is None
                else None
            ),
        )


class InsightTracker:
    """Live subscriptions of every stream on this instance (a ``StreamObserver``).

    ``clock`` gives Unix seconds (injectable for tests). ``on_close`` is called after a stream
    closed, so the flusher can write its final state without waiting for the next tick.
    """

    def __init__(self, instance_id: str, *, clock: Clock = time.time) -> None:
        self.instance_id = instance_id
        self._clock = clock
        self._streams: dict[int, LiveSubscription] = {}
        self._by_id: dict[str, LiveSubscription] = {}
        #: node id -> its tracked streams (open, or closed and not yet flushed), oldest first.
        self._by_node: dict[str, list[LiveSubscription]] = {}
        self._dirty: list[LiveSubscription] = []
        #: How many of the dirty streams are closed ones (their final state is due now).
        self._closed_dirty = 0
        self._open = 0
        #: Node ids whose streams closed since :meth:`take_closed_nodes` (for the pruning of
        #: insights whose Dataplane never existed).
        self._closed_nodes: set[str] = set()
        self.on_close: Callable[[], None] | None = None
        #: What the proxies' certificates are (the mTLS section of their insights); None when
        #: nobody issues certificates here.
        self.mtls_of: MtlsOf | None = None

    # --- StreamObserver ---------------------------------------------------------------------

    def on_stream_open(
        self, stream_id: int, node_id: str, protocol: Flavour, envoy_version: str
    ) -> None:
        stream = LiveSubscription(stream_id, node_id, self.instance_id, self._clock())
        stream.mtls_of = self.mtls_of
        if envoy_version:
            stream.version = {"envoy": {"version": envoy_version, "build": ""}}
        self._streams[stream_id] = stream
        self._by_id[stream.id] = stream
        self._open += 1
        self._by_node.setdefault(node_id, []).append(stream)
        self._mark(stream)

    def on_stream_version(self, stream_id: int, version: Mapping[str, Mapping[str, str]]) -> None:
        """The proxy's Envoy and kuma-dp versions, read from its node (once per stream)."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.version = _shared_version(version)
            self._mark(stream)

    def on_response(self, node_id: str, type_url: str, resource_count: int, nonce: str) -> None:
        self._count(node_id, type_url, SENT)

    def on_ack(self, node_id: str, type_url: str, nonce: str) -> None:
        self._count(node_id, type_url, ACKED)

    def on_nack(self, node_id: str, type_url: str, nonce: str, message: str) -> None:
        self._count(node_id, type_url, REJECTED)

    def on_tally(self, tally: Tally) -> None:
        """One loop turn's responses and ACKs at once (:mod:`kuma.xds.server.tally`): the same
        counts as ``on_response``/``on_ack`` per event, the clock read once for all of them."""
        now = self._clock()
        self._count_each(tally.sent, SENT, now)
        self._count_each(tally.acked, ACKED, now)

    def _count_each(self, events: Iterable[tuple[Any, ...]], field: int, now: float) -> None:
        """Count each event (node id, type URL, ...) on its proxy's newest open stream: in a
        fan-out this runs for every connected proxy, twice per change, so it is written out."""
        by_node = self._by_node
        offsets = _OFFSETS
        for event in events:
            streams = by_node.get(event[0])
            if streams is None:
                continue
            stream = streams[-1]
            if stream.disconnect_time is not None:  # rare: a reconnect's overlap
                found = self._current(event[0])
                if found is None:
                    continue
                stream = found
            counts = stream.counts
            counts[field] += 1
            offset = offsets.get(event[1])
            if offset is not None:
                counts[offset + field] += 1
            stream.last_update = now
            if not stream.dirty:
                self._mark(stream)

    def _count(self, node_id: str, type_url: str, field: int) -> None:
        """One more response ``SENT``, ``ACKED`` or ``REJECTED``: in total and for its type."""
        self._count_each(((node_id, type_url),), field, self._clock())

    def on_stream_close(self, stream_id: int, node_id: str) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.disconnect_time is not None:
            return
        stream.disconnect_time = self._clock()
        self._mark(stream)
        self._closed_nodes.add(node_id)
        self._closed_dirty += 1
        self._open -= 1
        if self.on_close is not None:
            self.on_close()

    def touch(self, node_ids: Iterable[str]) -> None:
        """Something these proxies' insights show besides the counters changed (their
        certificates): write them with the next flush."""
        for node_id in node_ids:
            stream = self._current(node_id)
            if stream is not None:
                self._mark(stream)

    # --- the flusher's side -------------------------------------------------------------------

    def take_dirty(self, *, closed_only: bool = False) -> list[LiveSubscription]:
        """The subscriptions changed since they were last taken; with ``closed_only`` only
        those of closed streams (the others stay due). Cheap: nothing is copied here, the
        caller snapshots each one when it writes it, so what is written is the latest state."""
        if closed_only:
            dirty = [s for s in self._dirty if s.disconnect_time is not None]
            self._dirty = [s for s in self._dirty if s.disconnect_time is None]
        else:
            dirty, self._dirty = self._dirty, []
        self._closed_dirty = 0
        for stream in dirty:
            stream.dirty = False
        return dirty

    def forget(self, subscription_ids: set[str]) -> None:
        """Drop the closed streams whose final state (these subscription ids) is now written.

        A stream that changed again since (it cannot, once closed, but a write can race a
        close) or is still open is kept.
        """
        for subscription_id in subscription_ids:
            stream = self._by_id.get(subscription_id)
            if stream is None or stream.disconnect_time is None or stream.dirty:
                continue
            del self._by_id[subscription_id]
            del self._streams[stream.stream_id]
            streams = self._by_node[stream.node_id]
            streams.remove(stream)
            if not streams:
                del self._by_node[stream.node_id]

    def take_closed_nodes(self) -> set[str]:
        closed, self._closed_nodes = self._closed_nodes, set()
        return closed

    @property
    def has_dirty(self) -> bool:
        return bool(self._dirty)

    @property
    def has_closed(self) -> bool:
        """Some closed stream's final state is not taken yet."""
        return self._closed_dirty > 0

    # --- reads --------------------------------------------------------------------------------

    def live(self, node_id: str) -> list[DiscoverySubscription]:
        """This instance's subscriptions of a proxy, as of now (oldest first)."""
        streams = self._by_node.get(node_id)
        if not streams:
            return []
        return [stream.snapshot() for stream in streams]

    def tracks(self, node_id: str) -> bool:
        """Some stream of this proxy is open, or closed and not yet flushed."""
        return node_id in self._by_node

    @property
    def open_streams(self) -> int:
        return self._open

    @property
    def tracked_streams(self) -> int:
        return len(self._streams)

    # --- internals ----------------------------------------------------------------------------

    def _current(self, node_id: str) -> LiveSubscription | None:
        streams = self._by_node.get(node_id)
        if streams is None:
            return None
        for stream in reversed(streams):
            if stream.disconnect_time is None:
                return stream
        return None

    def _mark(self, stream: LiveSubscription) -> None:
        if not stream.dirty:
            stream.dirty = True
            self._dirty.append(stream)
