"""RSS of kuma-cp's stream path across storms of streams opened and dropped (issue 17, defect 3).

The control plane is wired as kuma-cp wires it (memory store, engine, registration, insights,
metrics, the ADS server on a real port) and the clients run in the same process: each round
opens ``--streams`` sidecar streams on their own connections (half register a Dataplane, half
name an unknown node and wait), takes the first responses, drops every connection, waits until
everything per stream is let go, collects garbage and prints the RSS. At the end ``malloc_trim``
shows how much of the rest the C allocator was merely keeping.

    python benchmarks/bench_stream_storms.py --streams 2000 --rounds 5
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import sys
from functools import partial
from pathlib import Path

import anyio

from kuma.cp.registration import Registrar
from kuma.insights import Insights, MemoryInsightStore, dataplane_exists
from kuma.metrics import Metrics
from kuma.resources import Mesh
from kuma.store.memory import MemoryStore
from kuma.xds.engine import Engine
from kuma.xds.server import serve
from kuma.xds.server.observer import ObserverGroup

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.cp import test_stream_storms as storms


def rss_mb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return 0


async def main(streams: int, rounds: int) -> None:
    storms.STREAMS = streams
    store = MemoryStore()
    await store.create(Mesh(name="default"))
    metrics = Metrics()
    engine = Engine(on_batch=metrics.on_batch)
    insight_store = MemoryInsightStore()
    insights = Insights(
        insight_store,
        flush_interval=0.05,
        observer=metrics,
        dataplane_exists=partial(dataplane_exists, store),
    )
    registrar = Registrar(store, 0.01)
    observer = ObserverGroup([insights.tracker, metrics])
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run, store)
        tg.start_soon(insights.run)
        tg.start_soon(storms.follow_deletions, store, insights)
        await tg.start(registrar.run)
        await engine.wait_synced()
        ads = partial(serve, engine, "127.0.0.1", 0, observer, lifecycle=registrar)
        port: int = await tg.start(ads)
        print(f"before: rss {rss_mb()} MB")
        for index in range(rounds):
            opened: list[int] = []
            await storms.storm(port, opened)
            await storms.until(lambda: insights.tracker.tracked_streams == 0)
            await storms.deregistered(store)
            await storms.until(lambda: len(engine.proxies) == 0)
            await storms.until(lambda: len(insight_store) == 0)
            await anyio.sleep(1)
            gc.collect()
            print(
                f"round {index}: {len(opened)} streams, rss {rss_mb()} MB, "
                f"tracked objects {len(gc.get_objects())}, blocks {sys.getallocatedblocks()}"
            )
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        print(f"after malloc_trim: rss {rss_mb()} MB")
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    anyio.run(main, args.streams, args.rounds)
