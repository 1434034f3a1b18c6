"""What kuma-cp's stream observers cost per proxy in a fan-out: one response, its change
delivered and its ACK per proxy, through insights, metrics and the GUI's stream and propagation
hooks, called per event (``ObserverGroup``) or tallied per loop turn (``TalliedObserverGroup``,
kuma/xds/server/tally.py, what kuma-cp uses).

Run: ``python benchmarks/bench_observers.py [proxies]``. Prints the best of 15 changes in
microseconds per proxy per change for both groups.
"""

from __future__ import annotations

import asyncio
import sys
import time

from kuma.gui.feed import LiveFeed
from kuma.gui.propagation import PropagationLog
from kuma.gui.streams import StreamWatcher
from kuma.insights.tracker import InsightTracker
from kuma.metrics import Metrics
from kuma.xds.server.observer import ObserverGroup, StreamObserver
from kuma.xds.server.tally import TalliedObserverGroup
from kuma.xds.types import CLUSTER

CHANGES = 15


async def per_proxy_us(tallied: bool, proxies: int) -> float:
    metrics = Metrics()
    feed = LiveFeed()
    metrics.on_propagation = PropagationLog(feed).on_propagation
    observers: list[StreamObserver] = [InsightTracker("bench"), metrics, StreamWatcher(feed)]
    group = TalliedObserverGroup(observers) if tallied else ObserverGroup(observers)
    nodes = [f"default.p{index}" for index in range(proxies)]
    for stream_id, node in enumerate(nodes):
        group.on_stream_open(stream_id, node, "delta", "1.40.0")
    best = float("inf")
    for change in range(CHANGES):
        nonce = str(change)
        started = time.perf_counter()
        since = time.monotonic()
        for node in nodes:
            group.on_response(node, CLUSTER, 1, nonce)
            group.on_change_delivered(node, since)
        await asyncio.sleep(0)  # the turn ends: the tally is delivered
        for node in nodes:
            group.on_ack(node, CLUSTER, nonce)
        await asyncio.sleep(0)
        best = min(best, time.perf_counter() - started)
    return best / proxies * 1e6


def main() -> None:
    proxies = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    for tallied in (False, True):
        name = "tallied per turn" if tallied else "per event"
        print(f"{name:17s}: {asyncio.run(per_proxy_us(tallied, proxies)):.2f} µs per proxy")


if __name__ == "__main__":
    main()
