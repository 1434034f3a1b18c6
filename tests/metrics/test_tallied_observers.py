"""The per-response hooks batched per loop turn (kuma/xds/server/tally.py) leave insights,
metrics and the GUI exactly where the per-event hooks leave them, and never after a close."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kuma.gui.feed import LiveFeed
from kuma.gui.streams import StreamWatcher
from kuma.insights.tracker import InsightTracker
from kuma.metrics import Metrics
from kuma.xds.generate.types import CLUSTER, ENDPOINT, LISTENER
from kuma.xds.server.observer import ObserverGroup, StreamObserver
from kuma.xds.server.tally import MOST_PENDING, TalliedObserverGroup

from .scrape import scrape

NODES = ("default.a", "default.b", "default.c")


def _clock(start: float) -> Callable[[], float]:
    """A clock that moves 0.125 s per read (exact in binary: sums compare equal)."""
    now = [start]

    def read() -> float:
        now[0] += 0.125
        return now[0]

    return read


class _Observers:
    def __init__(self, *, tallied: bool) -> None:
        self.tracker = InsightTracker("instance", clock=lambda: 1000.0)
        # Propagation is measured with the group's clock when tallied, else the metrics' own.
        self.metrics = Metrics(clock=_clock(50.0))
        self.feed = LiveFeed()
        self.watcher = StreamWatcher(self.feed, clock=lambda: 1000.0)
        self.delivered: list[tuple[str, float]] = []
        self.metrics.on_propagation = lambda node, seconds: self.delivered.append((node, seconds))
        observers: list[StreamObserver] = [self.tracker, self.metrics, self.watcher]
        self.group = (
            TalliedObserverGroup(observers, clock=_clock(50.0))
            if tallied
            else ObserverGroup(observers)
        )

    def state(self) -> tuple[Any, ...]:
        live = {node: [s.status for s in self.tracker.live(node)] for node in NODES}
        flags = {node: [s.disconnect_time for s in self.tracker.live(node)] for node in NODES}
        series = scrape(self.metrics)
        counts = {
            (name, kind): series.value(f"kuma_xds_responses_{name}_total", type=kind)
            for name in ("sent", "acked", "nacked")
            for kind in ("cds", "eds", "lds", "other")
        }
        propagation = (
            series.value("kuma_xds_propagation_seconds_count"),
            series.value("kuma_xds_propagation_seconds_sum"),
            series.value("kuma_xds_propagation_seconds_bucket", le="0.25"),
        )
        return live, flags, counts, propagation, list(self.delivered)


async def _drive(group: ObserverGroup) -> None:
    """Opens, a fan-out's responses and ACKs over several loop turns, a NACK, an unknown
    type, responses and a close in one turn, a reconnect."""
    for stream_id, node in enumerate(NODES):
        group.on_stream_open(stream_id, node, "delta", "1.40.0")
    for turn in range(3):
        for node in NODES:
            group.on_response(node, CLUSTER, 2, str(turn))
            group.on_change_delivered(node, 49.0 + turn)
        await asyncio.sleep(0)
        for node in NODES:
            group.on_ack(node, CLUSTER, str(turn))
        await asyncio.sleep(0)
    group.on_response("default.a", ENDPOINT, 1, "9")
    group.on_nack("default.a", ENDPOINT, "9", "bad endpoint")
    group.on_response("default.b", "type.googleapis.com/some.Other", 1, "10")
    group.on_ack("default.b", "type.googleapis.com/some.Other", "10")
    # Counted on the stream that closes, in the same turn as its close.
    group.on_response("default.c", LISTENER, 1, "11")
    group.on_ack("default.c", LISTENER, "11")
    group.on_stream_close(2, "default.c")
    group.on_stream_open(3, "default.c", "delta", "1.40.0")
    group.on_response("default.c", LISTENER, 1, "12")
    await asyncio.sleep(0)


def test_the_same_counts_as_the_per_event_hooks() -> None:
    each, tallied = _Observers(tallied=False), _Observers(tallied=True)
    asyncio.run(_drive(each.group))
    asyncio.run(_drive(tallied.group))
    assert tallied.state() == each.state()
    closed = tallied.tracker.live("default.c")[0]
    assert closed.disconnect_time is not None
    assert closed.status.lds.responses_sent == 1
    assert closed.status.lds.responses_acknowledged == 1


def test_delivered_at_the_end_of_the_turn() -> None:
    observers = _Observers(tallied=True)

    async def run() -> None:
        group = observers.group
        group.on_stream_open(1, "default.a", "delta", "1.40.0")
        group.on_response("default.a", CLUSTER, 2, "1")
        group.on_change_delivered("default.a", 49.0)
        await asyncio.sleep(0)
        [status] = [s.status for s in observers.tracker.live("default.a")]
        assert status.cds.responses_sent == 1
        assert observers.delivered == [("default.a", 1.125)]

    asyncio.run(run())


def test_gui_hears_each_touched_proxy_once_per_turn() -> None:
    observers = _Observers(tallied=True)

    async def run() -> list[Any]:
        with observers.feed.subscribe() as page:
            observers.group.on_stream_open(1, "default.a", "delta", "1.40.0")
            observers.group.on_stream_open(2, "default.b", "delta", "1.40.0")
            await page.next_batch(gather=0)
            observers.group.on_response("default.a", CLUSTER, 1, "1")
            observers.group.on_ack("default.a", CLUSTER, "1")
            observers.group.on_ack("default.b", CLUSTER, "1")
            return await page.next_batch(gather=0)

    assert asyncio.run(run()) == [
        {"kind": "insight", "mesh": "default", "name": "a"},
        {"kind": "insight", "mesh": "default", "name": "b"},
    ]


class _Recorder:
    """An observer without ``on_tally``: its per-event hooks are called at delivery."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_stream_open(self, stream_id: int, node_id: str, protocol: Any, envoy: str) -> None:
        self.calls.append(("open", node_id))

    def on_response(self, node_id: str, type_url: str, resource_count: int, nonce: str) -> None:
        self.calls.append(("response", node_id, type_url, resource_count, nonce))

    def on_ack(self, node_id: str, type_url: str, nonce: str) -> None:
        self.calls.append(("ack", node_id, type_url, nonce))

    def on_nack(self, node_id: str, type_url: str, nonce: str, message: str) -> None:
        self.calls.append(("nack", node_id))

    def on_change_delivered(self, node_id: str, changed_at: float) -> None:
        self.calls.append(("delivered", node_id, changed_at))

    def on_stream_close(self, stream_id: int, node_id: str) -> None:
        self.calls.append(("close", node_id))


def test_an_observer_without_a_bulk_hook_hears_every_event() -> None:
    recorder = _Recorder()
    group = TalliedObserverGroup([recorder])
    # Outside a loop every event is delivered at once.
    group.on_stream_open(1, "default.a", "delta", "1.40.0")
    group.on_response("default.a", CLUSTER, 3, "1")
    group.on_change_delivered("default.a", 7.0)
    group.on_ack("default.a", CLUSTER, "1")

    async def in_a_loop() -> None:
        group.on_response("default.a", CLUSTER, 1, "2")
        group.on_nack("default.a", CLUSTER, "2", "bad")
        group.on_response("default.a", CLUSTER, 1, "3")
        group.on_stream_close(1, "default.a")

    asyncio.run(in_a_loop())
    assert recorder.calls == [
        ("open", "default.a"),
        ("response", "default.a", CLUSTER, 3, "1"),
        ("delivered", "default.a", 7.0),
        ("ack", "default.a", CLUSTER, "1"),
        ("response", "default.a", CLUSTER, 1, "2"),
        ("nack", "default.a"),
        ("response", "default.a", CLUSTER, 1, "3"),
        ("close", "default.a"),
    ]


def test_a_long_turn_delivers_every_most_pending_events() -> None:
    """A fan-out's turn runs thousands of sends: the counts do not wait for its end."""
    observers = _Observers(tallied=True)

    async def run() -> tuple[int, int]:
        group = observers.group
        group.on_stream_open(1, "default.a", "delta", "1.40.0")
        for index in range(MOST_PENDING - 1):
            group.on_response("default.a", CLUSTER, 1, str(index))
        [before] = observers.tracker.live("default.a")
        group.on_response("default.a", CLUSTER, 1, "last")
        [after] = observers.tracker.live("default.a")
        return before.status.cds.responses_sent, after.status.cds.responses_sent

    assert asyncio.run(run()) == (0, MOST_PENDING)
