"""The control plane's Prometheus metrics, in a registry of their own.

:class:`Metrics` owns a :class:`~prometheus_client.CollectorRegistry` (never the global one:
two control planes in one test process, or two tests, do not share series) and is fed by:

* the ADS server, as a :class:`kuma.xds.server.StreamObserver`: active streams by protocol,
  responses sent, ACKed and NACKed by type, and the propagation latency;
* the engine's batch callback (:meth:`on_batch`): batch size and duration;
* the runtime's store watch (:meth:`on_store_event`) and :class:`~.store.InstrumentedStore`:
  store events, operations and errors; :meth:`watch_problems` reads ``Store.problems()`` at
  scrape time (directory files in error, undecodable etcd values);
* the insight flusher (:class:`kuma.insights.FlushObserver`): flushes, subscriptions written,
  errors.

Propagation latency is "store event received by the engine -> first response written to a
proxy after it". The engine's change notice carries the arrival time of the oldest event behind
it (``kuma.xds.source.Changes.since``); the stream, after the first response it writes for
changes it took, reports that time (``on_change_delivered``) and the difference is observed.
Several changes coalescing before a send count once, from the oldest. Every call here is
synchronous and cheap: a dict lookup and an increment on the streams' paths.

Series (all prefixed ``kuma_``): see the ``_define`` calls below.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from operator import itemgetter
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kuma.store import ResourceEvent, Store
from kuma.xds.server.observer import Flavour
from kuma.xds.server.tally import Tally
from kuma.xds.types import SHORT_NAMES

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 50000)
_DURATION_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
_PROTOCOLS: tuple[Flavour, ...] = ("delta", "sotw")


class BatchStatsLike(Protocol):
    """``kuma.xds.engine.BatchStats`` (read-only view, to keep the engine out of imports)."""

    @property
    def events(self) -> int: ...

    @property
    def proxies_assembled(self) -> int: ...

    @property
    def proxies_notified(self) -> int: ...

    @property
    def seconds(self) -> float: ...


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        #: Told each propagation measurement as ``(node id, seconds)`` (the GUI's live view).
        self.on_propagation: Callable[[str, float], None] | None = None
        self._clock = clock
        r = self.registry
        # The standard process_* series (RSS, CPU seconds, open and max file descriptors, start
        # time), as every Prometheus client library exposes them.
        ProcessCollector(registry=r)
        self.streams_active = Gauge(
            "kuma_xds_streams_active", "Open ADS streams", ["protocol"], registry=r
        )
        self.streams_opened = Counter(
            "kuma_xds_streams_opened", "ADS streams opened", ["protocol"], registry=r
        )
        self.responses_sent = Counter(
            "kuma_xds_responses_sent", "xDS responses written to proxies", ["type"], registry=r
        )
        self.responses_acked = Counter(
            "kuma_xds_responses_acked", "xDS responses ACKed by proxies", ["type"], registry=r
        )
        self.responses_nacked = Counter(
            "kuma_xds_responses_nacked", "xDS responses NACKed by proxies", ["type"], registry=r
        )
        self.streams_waiting = Gauge(
            "kuma_xds_streams_waiting",
            "Open ADS streams waiting for a Dataplane that does not exist (yet)",
            registry=r,
        )
        self.stale_replies = Counter(
            "kuma_xds_stale_replies",
            "ACKs/NACKs answering a nonce the stream never sent or had already seen answered "
            "(not counted as ACKs or NACKs)",
            ["type"],
            registry=r,
        )
        self.propagation = Histogram(
            "kuma_xds_propagation_seconds",
            "From a store event reaching the engine to the first response written to a proxy "
            "it changed",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_events = Histogram(
            "kuma_engine_batch_events",
            "Store events per engine batch",
            buckets=_BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "kuma_engine_batch_seconds",
            "Time the engine took to apply one batch",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.proxies_assembled = Counter(
            "kuma_engine_proxies_assembled", "Proxy configurations re-assembled", registry=r
        )
        self.proxies_notified = Counter(
            "kuma_engine_proxies_notified", "Proxies told that resources changed", registry=r
        )
        self.streams_refused = Counter(
            "kuma_xds_streams_refused",
            "ADS streams refused by authentication (no_token, expired, revoked, unknown_kid, "
            "bad_signature, name, mesh, tags, type, ...)",
            ["reason"],
            registry=r,
        )
        self.streams_deauthenticated = Counter(
            "kuma_xds_streams_deauthenticated",
            "Live ADS streams closed because their token expired or was revoked, or its key went",
            ["reason"],
            registry=r,
        )
        self.store_events = Counter(
            "kuma_store_events",
            "Store change events after the initial snapshot",
            ["type", "operation"],
            registry=r,
        )
        self.store_operations = Counter(
            "kuma_store_operations",
            "Store calls by outcome (ok, not_found, conflict, invalid, unavailable, error)",
            ["operation", "outcome"],
            registry=r,
        )
        self.store_errors = Counter(
            "kuma_store_errors",
            "Store calls that failed (store unavailable or unexpected error)",
            ["operation"],
            registry=r,
        )
        self.store_seconds = Histogram(
            "kuma_store_operation_seconds",
            "Duration of store calls",
            ["operation"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.store_problems = Gauge(
            "kuma_store_problems",
            "Entries the store holds but cannot serve (files or values in error)",
            registry=r,
        )
        self.insight_flushes = Counter(
            "kuma_insights_flush_batches", "Insight batches written", registry=r
        )
        self.insights_flushed = Counter(
            "kuma_insights_flushed", "Insight subscriptions written", registry=r
        )
        self.insight_flush_errors = Counter(
            "kuma_insights_flush_errors", "Insight batches that failed to write", registry=r
        )
        self.insight_flush_seconds = Histogram(
            "kuma_insights_flush_seconds",
            "Duration of one insight flush (all its batches)",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        # Children resolved once: ``labels()`` takes a lock and builds a tuple on every call.
        self._active = {p: self.streams_active.labels(p) for p in _PROTOCOLS}
        self._opened = {p: self.streams_opened.labels(p) for p in _PROTOCOLS}
        self._sent = {t: self.responses_sent.labels(s) for t, s in SHORT_NAMES.items()}
        self._acked = {t: self.responses_acked.labels(s) for t, s in SHORT_NAMES.items()}
        self._nacked = {t: self.responses_nacked.labels(s) for t, s in SHORT_NAMES.items()}
        self._stream_protocols: dict[int, Flavour] = {}

    # --- exposition ---------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition of every series (what ``/metrics`` returns)."""
        return generate_latest(self.registry)

    # --- StreamObserver -----------------------------------------------------------------------

    def on_stream_open(
        self, stream_id: int, node_id: str, protocol: Flavour, envoy_version: str
    ) -> None:
        self._stream_protocols[stream_id] = protocol
        self._active[protocol].inc()
        self._opened[protocol].inc()

    def on_response(self, node_id: str, type_url: str, resource_count: int, nonce: str) -> None:
        _child(self._sent, self.responses_sent, type_url).inc()

    def on_change_delivered(self, node_id: str, changed_at: float) -> None:
        seconds = max(0.0, self._clock() - changed_at)
        self.propagation.observe(seconds)
        if self.on_propagation is not None:
            self.on_propagation(node_id, seconds)

    def on_tally(self, tally: Tally) -> None:
        """One loop turn's responses, ACKs and deliveries (:mod:`kuma.xds.server.tally`): each
        counter incremented once per type, each propagation observed as measured at its write."""
        for type_url, count in collections.Counter(map(itemgetter(1), tally.sent)).items():
            _child(self._sent, self.responses_sent, type_url).inc(count)
        for type_url, count in collections.Counter(map(itemgetter(1), tally.acked)).items():
            _child(self._acked, self.responses_acked, type_url).inc(count)
        observe = self.propagation.observe
        heard = self.on_propagation
        for node_id, _, seconds in tally.delivered:
            observe(seconds)
            if heard is not None:
                heard(node_id, seconds)

    def on_ack(self, node_id: str, type_url: str, nonce: str) -> None:
        _child(self._acked, self.responses_acked, type_url).inc()

    def on_nack(self, node_id: str, type_url: str, nonce: str, message: str) -> None:
        _child(self._nacked, self.responses_nacked, type_url).inc()

    def on_waiting_streams(self, count: int) -> None:
        self.streams_waiting.set(count)

    def on_stale_reply(self, node_id: str, type_url: str, nonce: str) -> None:
        self.stale_replies.labels(SHORT_NAMES.get(type_url, "other")).inc()

    def on_stream_close(self, stream_id: int, node_id: str) -> None:
        protocol = self._stream_protocols.pop(stream_id, None)
        if protocol is not None:
            self._active[protocol].dec()

    # --- engine -------------------------------------------------------------------------------

    def on_batch(self, stats: BatchStatsLike) -> None:
        self.batch_events.observe(stats.events)
        self.batch_seconds.observe(stats.seconds)
        self.proxies_assembled.inc(stats.proxies_assembled)
        self.proxies_notified.inc(stats.proxies_notified)

    # --- store --------------------------------------------------------------------------------

    def on_stream_refused(self, reason: str) -> None:
        self.streams_refused.labels(reason).inc()

    def on_stream_deauthenticated(self, reason: str) -> None:
        self.streams_deauthenticated.labels(reason).inc()

    def on_store_event(self, event: ResourceEvent) -> None:
        self.store_events.labels(event.key.type, event.operation.value).inc()

    def on_store_call(self, operation: str, outcome: str, seconds: float) -> None:
        self.store_operations.labels(operation, outcome).inc()
        self.store_seconds.labels(operation).observe(seconds)
        if outcome in ("unavailable", "error"):
            self.store_errors.labels(operation).inc()

    def watch_problems(self, store: Store) -> None:
        """Report ``len(store.problems())`` at every scrape."""
        self.store_problems.set_function(lambda: float(len(store.problems())))

    # --- insights (kuma.insights.FlushObserver) ------------------------------------------------

    def on_insight_flush(self, written: int, batches: int, seconds: float) -> None:
        self.insight_flushes.inc(batches)
        self.insights_flushed.inc(written)
        self.insight_flush_seconds.observe(seconds)

    def on_insight_flush_error(self) -> None:
        self.insight_flush_errors.inc()


def _child(children: dict[str, Counter], family: Counter, type_url: str) -> Counter:
    """The counter of ``type_url`` among ``children`` (resolved once per type; a type without a
    short name counts as ``other``)."""
    child = children.get(type_url)
    if child is None:
        child = children[type_url] = family.labels("other")
    return child
