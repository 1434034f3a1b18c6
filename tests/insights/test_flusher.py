"""Flushing: only when changed, at most once per interval, at once on close, batched and
rate-limited, retried after a failure. Time is a fake clock: nothing here sleeps."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from kuma.insights import InsightFlusher, InsightTracker, MemoryInsightStore, TokenBucket
from kuma.insights.store import Update
from kuma.xds.generate.types import CLUSTER

from .clocks import FakeClock

pytestmark = pytest.mark.anyio

NODE = "default.web-1"


class Reports:
    """A FlushObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.flushes: list[tuple[int, int]] = []
        self.errors = 0

    def on_insight_flush(self, written: int, batches: int, seconds: float) -> None:
        self.flushes.append((written, batches))

    def on_insight_flush_error(self) -> None:
        self.errors += 1


class FlakyStore(MemoryInsightStore):
    """Fails the next ``failures`` batches."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def upsert(self, updates: Sequence[Update]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store down")
        await super().upsert(updates)


def setup(
    store: MemoryInsightStore | None = None, **options: float
) -> tuple[FakeClock, InsightTracker, MemoryInsightStore, InsightFlusher, Reports]:
    clock = FakeClock()
    tracker = InsightTracker("cp-1", clock=clock)
    store = store if store is not None else MemoryInsightStore(clock=clock)
    reports = Reports()
    flusher = InsightFlusher(
        tracker,
        store,
        interval=10.0,
        clock=clock,
        sleep=clock.sleep,
        observer=reports,
        batch_size=int(options.get("batch_size", 500)),
        max_rate=options.get("max_rate", 2000.0),
    )
    return clock, tracker, store, flusher, reports


def sent(store: MemoryInsightStore, node: str = NODE) -> list[int]:
    insight = store.get(*node.split(".", 1))
    assert insight is not None
    return [s.status.total.responses_sent for s in insight.subscriptions]


async def test_written_at_most_once_per_interval_and_only_when_changed() -> None:
    clock, tracker, store, flusher, _ = setup()
    tracker.on_stream_open(1, NODE, "delta", "")
    assert await flusher.flush_due() == 0  # the interval has not passed
    clock.advance(10)
    assert await flusher.flush_due() == 1
    assert sent(store) == [0]
    tracker.on_response(NODE, CLUSTER, 1, "1")
    clock.advance(5)
    assert await flusher.flush_due() == 0  # changed, but written 5 s ago
    clock.advance(5)
    assert await flusher.flush_due() == 1
    assert sent(store) == [1]
    clock.advance(10)
    writes = store.writes
    assert await flusher.flush_due() == 0  # nothing changed: no write at all
    assert store.writes == writes


async def test_a_close_is_written_at_once_and_only_the_closed_stream() -> None:
    clock, tracker, store, flusher, _ = setup()
    tracker.on_stream_open(1, NODE, "delta", "")
    tracker.on_stream_open(2, "default.web-2", "delta", "")
    clock.advance(10)
    assert await flusher.flush_due() == 2
    clock.advance(1)
    tracker.on_response(NODE, CLUSTER, 1, "1")
    tracker.on_stream_close(2, "default.web-2")
    assert await flusher.flush_due() == 1  # web-2's final state; web-1 keeps to the interval
    web2 = store.get("default", "web-2")
    assert web2 is not None
    assert not web2.online
    assert sent(store) == [0]
    assert tracker.tracked_streams == 1  # the closed stream is written, so forgotten
    clock.advance(9)
    assert await flusher.flush_due() == 1
    assert sent(store) == [1]


async def test_reconnects_keep_the_last_two_subscriptions() -> None:
    clock, tracker, store, flusher, _ = setup()
    ids = []
    for stream_id in range(1, 5):
        tracker.on_stream_open(stream_id, NODE, "delta", "")
        ids.append(tracker.live(NODE)[-1].id)
        clock.advance(1)
        tracker.on_stream_close(stream_id, NODE)
        await flusher.flush_due()
    insight = store.get("default", "web-1")
    assert insight is not None
    assert [s.id for s in insight.subscriptions] == ids[-2:]
    assert not insight.online


async def test_batches_are_rate_limited() -> None:
    clock, tracker, store, flusher, reports = setup(batch_size=10, max_rate=100)
    for stream_id in range(35):
        tracker.on_stream_open(stream_id, f"default.web-{stream_id}", "delta", "")
    clock.advance(10)
    assert await flusher.flush_due() == 35
    assert len(store) == 35
    assert store.writes == 4
    # The first batch is the burst; the other 25 subscriptions wait for tokens at 100/s.
    assert clock.slept == pytest.approx([0.1, 0.1, 0.05])
    assert reports.flushes == [(35, 4)]


async def test_a_failed_batch_is_kept_and_retried_with_the_latest_state() -> None:
    clock, tracker, store, flusher, reports = setup(FlakyStore(failures=1))
    tracker.on_stream_open(1, NODE, "delta", "")
    clock.advance(10)
    assert await flusher.flush_due() == 0
    assert reports.errors == 1
    assert flusher.pending == 1
    tracker.on_response(NODE, CLUSTER, 1, "1")
    clock.advance(10)
    assert await flusher.flush_due() == 1  # one write, of the newest snapshot
    assert sent(store) == [1]
    assert flusher.pending == 0


async def test_a_failed_close_is_not_forgotten_before_it_is_written() -> None:
    clock, tracker, store, flusher, _ = setup(FlakyStore(failures=1))
    tracker.on_stream_open(1, NODE, "delta", "")
    tracker.on_stream_close(1, NODE)
    assert await flusher.flush_due() == 0
    assert tracker.tracks(NODE)  # reads still see it closed
    clock.advance(10)
    assert await flusher.flush_due() == 1
    assert not tracker.tracks(NODE)
    insight = store.get("default", "web-1")
    assert insight is not None
    assert not insight.online


def test_token_bucket() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert bucket.reserve(5) == 0
    assert bucket.reserve(2) == pytest.approx(0.2)
    clock.advance(10)  # refills, but never beyond the burst
    assert bucket.reserve(5) == 0
    assert bucket.reserve(1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(rate=0, burst=1, clock=clock)


async def test_run_writes_a_close_promptly_and_flushes_on_shutdown() -> None:
    tracker = InsightTracker("cp-1")
    store = MemoryInsightStore()
    # Real time here (the loop waits on events), but an interval no test waits for.
    flusher = InsightFlusher(tracker, store, interval=3600, close_delay=0.001)
    tracker.on_stream_open(1, NODE, "delta", "")
    tracker.on_stream_open(2, "default.web-2", "delta", "")
    running = anyio.CancelScope()

    async def run() -> None:
        with running:
            await flusher.run()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await anyio.wait_all_tasks_blocked()
            tracker.on_stream_close(1, NODE)
            while store.get("default", "web-1") is None:
                await anyio.wait_all_tasks_blocked()
            insight = store.get("default", "web-1")
            assert insight is not None
            assert not insight.online
            assert store.get("default", "web-2") is None  # open: waits for the interval
            tracker.on_response("default.web-2", CLUSTER, 1, "1")
            running.cancel()
            # Shutting down: the final flush waits for the streams being cancelled to close.
            await anyio.wait_all_tasks_blocked()
            assert store.get("default", "web-2") is None
            tracker.on_stream_close(2, "default.web-2")
    final = store.get("default", "web-2")
    assert final is not None
    assert not final.online
    assert final.subscriptions[0].status.total.responses_sent == 1
