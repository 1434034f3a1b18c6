"""Writing the tracker's subscriptions to the insight store: batched, rate-limited, when changed.

One flusher per control-plane instance (Kuma runs one goroutine and one store round trip per
stream; with 10,000 proxies that is 10,000 timers and 1,000 writes a second). Here:

* **periodic**: every ``interval`` (``xdsServer.dataplaneStatusFlushInterval``) the flusher
  takes the subscriptions changed since the previous tick, so each is written at most once per
  interval, and an idle proxy is never written;
* **on close**: a closed stream's final state (its disconnect time) is written right away,
  after a short ``close_delay`` that gathers a wave of disconnects into a few batches. Only
  closed subscriptions go: the open ones keep to the interval;
* **batched**: at most ``batch_size`` subscriptions per :meth:`InsightStore.upsert` call;
* **rate-limited**: a token bucket caps subscriptions written per second (``max_rate``), so a
  mesh-wide change that makes every proxy dirty spreads its writes instead of bursting. What
  is waiting is a dict keyed by subscription id holding the live subscriptions themselves, each
  copied only when its batch is written (the latest state goes, and a tick never copies
  10,000 at once), so a slow store never lets the backlog grow beyond one entry per stream;
* a failed batch stays pending and is retried on the next tick.

Clock and sleep are injectable: the tests drive every rule without sleeping.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import anyio.lowlevel

from .store import InsightStore, Update
from .tracker import Clock, InsightTracker, LiveSubscription

log = logging.getLogger("kuma.insights")

Sleep = Callable[[float], Awaitable[None]]

#: On shutdown: how long the final flush waits for the streams to close, then to write.
_FINAL_GRACE = 2.0


class FlushObserver(Protocol):
    """What the flusher reports (implemented by :class:`kuma.metrics.Metrics`)."""

    def on_insight_flush(self, written: int, batches: int, seconds: float) -> None: ...

    def on_insight_flush_error(self) -> None: ...


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()

    def reserve(self, count: int) -> float:
        """Take ``count`` tokens; the seconds to wait before using them (0 if available)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= count
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class InsightFlusher:
    def __init__(
        self,
        tracker: InsightTracker,
        store: InsightStore,
        *,
        interval: float,
        batch_size: int = 500,
        max_rate: float = 2000.0,
        close_delay: float = 0.5,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        observer: FlushObserver | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("the flush interval must be positive")
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self._tracker = tracker
        self._store = store
        self.interval = interval
        self.batch_size = batch_size
        self.close_delay = min(close_delay, interval)
        self._clock = clock
        self._sleep = sleep
        self._observer = observer
        # Burst of one batch: the first batch of a tick goes at once, the rest at max_rate.
        self._bucket = TokenBucket(max_rate, max(batch_size, 1), clock)
        self._next_tick = clock() + interval
        #: subscription id -> live subscription taken but not written yet. Snapshots are made
        #: batch by batch as they are written: a tick never copies 10,000 at once.
        self._pending: dict[str, LiveSubscription] = {}
        self._wake: anyio.Event | None = None
        self.ticks = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush_due(self) -> int:
        """Write what is due at ``clock()``: everything changed when the interval has passed,
        else only closed streams' final state. Returns the subscriptions written."""
        now = self._clock()
        if now >= self._next_tick:
            self._next_tick = now + self.interval
            self.ticks += 1
            self._take(closed_only=False)
        elif self._tracker.has_closed:
            self._take(closed_only=True)
        return await self._write(limited=True)

    async def flush_all(self) -> int:
        """Write everything changed, now, without the rate limit (shutdown)."""
        self._take(closed_only=False)
        return await self._write(limited=False)

    async def run(self) -> None:
        """Flush until cancelled; then a final flush of what the closing streams left."""
        self._tracker.on_close = self._closed
        try:
            while True:
                await self._wait()
                await self.flush_due()
        finally:
            with anyio.move_on_after(_FINAL_GRACE, shield=True):
                await self._final_flush()
            self._tracker.on_close = None

    # --- internals ----------------------------------------------------------------------------

    def _closed(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _wait(self) -> None:
        """Until the next tick, or a close (plus ``close_delay`` to gather others)."""
        if self._tracker.has_closed:
            await self._sleep(self.close_delay)
            return
        delay = self._next_tick - self._clock()
        if delay <= 0:
            return
        self._wake = anyio.Event()
        with anyio.move_on_after(delay):
            await self._wake.wait()
        woken = self._wake.is_set()
        self._wake = None
        if woken:
            await self._sleep(self.close_delay)

    async def _final_flush(self) -> None:
        # The ADS server is cancelled with us: give its streams a moment to report their close,
        # so the store does not keep them online.
        with anyio.move_on_after(_FINAL_GRACE / 2):
            while self._tracker.open_streams:
                self._wake = anyio.Event()
                await self._wake.wait()
        self._wake = None
        await self.flush_all()

    def _take(self, *, closed_only: bool) -> None:
        pending = self._pending
        for live in self._tracker.take_dirty(closed_only=closed_only):
            if live.id not in pending:
                pending[live.id] = live

    async def _write(self, *, limited: bool) -> int:
        if not self._pending:
            return 0
        started = self._clock()
        written = batches = 0
        while self._pending:
            ids = list(itertools.islice(self._pending, self.batch_size))
            if limited:
                wait = self._bucket.reserve(len(ids))
                if wait > 0:
                    await self._sleep(wait)
            # Snapshot after the wait: what is written is the latest state.
            pending = self._pending
            batch: list[Update] = [
                (live.mesh, live.name, live.snapshot()) for live in (pending[i] for i in ids)
            ]
            try:
                await self._store.upsert(batch)
            except Exception:
                # The store's problem, not the streams': keep the batch for the next tick.
                log.exception(
                    "could not flush %d dataplane insights to the %s insight store; will retry",
                    len(batch),
                    self._store.name,
                )
                if self._observer is not None:
                    self._observer.on_insight_flush_error()
                break
            for subscription_id in ids:
                del self._pending[subscription_id]
            self._tracker.forget(_closed_ids(batch))
            written += len(batch)
            batches += 1
            # Let the streams run between batches even when the store never awaits (memory).
            await anyio.lowlevel.checkpoint()
        if batches and self._observer is not None:
            self._observer.on_insight_flush(written, batches, self._clock() - started)
        return written


def _closed_ids(batch: list[Update]) -> set[str]:
    return {s.id for _, _, s in batch if s.disconnect_time is not None}
