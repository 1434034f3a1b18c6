"""Three per-connection costs of an ADS stream, each beside its alternative, in-process.

* ``tasks``: a stream's two loops as an anyio task group (the receive loop in the stream's task,
  the send loop started in the group, a cancel scope to end both: kuma-cp before 88dbff4) or as
  two plain asyncio tasks (``kuma.xds.server.session.Session.run`` now): memory held per parked
  stream (tracemalloc), CPU to start and to end 5,000 of them.
* ``decode``: Envoy 1.40's first ``DeltaDiscoveryRequest`` (61 KB, 516 extensions listed) read
  as Envoy's type or as kuma-cp's (``kuma.xds.server.slim_requests``, without
  ``node.extensions``).
* ``frames``: h2 receiving a small DATA frame (an ACK) with its trace line's text formatted at
  once (h2 as shipped) or only when written (``kuma.xds.server.frame_repr``).

Run: ``python benchmarks/bench_stream_setup.py [tasks|decode|frames ...]`` (all by default).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import anyio
import h2.config
import h2.connection
import h2.events
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest
from hyperframe.frame import DataFrame

from kuma.load.envoy_node import envoy_node
from kuma.xds.server import frame_repr
from kuma.xds.server.slim_requests import SlimDeltaDiscoveryRequest

STREAMS = 5_000


async def _parked(done: asyncio.Event) -> None:
    await done.wait()


async def _task_group(done: asyncio.Event) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(_parked, done)
        await done.wait()
        group.cancel_scope.cancel()


async def _two_tasks(done: asyncio.Event) -> None:
    sending = asyncio.get_running_loop().create_task(_parked(done))
    try:
        await done.wait()
    finally:
        sending.cancel()
        await asyncio.wait((sending,))


async def _streams(
    stream: Callable[[asyncio.Event], Coroutine[Any, Any, None]], traced: bool
) -> tuple[float, float, float]:
    """(bytes held per stream, µs to start one, µs to end one)."""
    done = [asyncio.Event() for _ in range(STREAMS)]
    gc.collect()
    if traced:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
    started = time.process_time()
    tasks = [asyncio.ensure_future(stream(event)) for event in done]
    for _ in range(3):
        await asyncio.sleep(0)
    start_us = 1e6 * (time.process_time() - started) / STREAMS
    held = 0.0
    if traced:
        after = tracemalloc.take_snapshot()
        held = sum(d.size_diff for d in after.compare_to(before, "filename")) / STREAMS
        tracemalloc.stop()
    ending = time.process_time()
    for event in done:
        event.set()
    await asyncio.gather(*tasks)
    end_us = 1e6 * (time.process_time() - ending) / STREAMS
    return held, start_us, end_us


def tasks() -> None:
    for name, stream in (("anyio task group", _task_group), ("two asyncio tasks", _two_tasks)):
        held = asyncio.run(_streams(stream, traced=True))[0]
        timings = [asyncio.run(_streams(stream, traced=False)) for _ in range(3)]
        start = sorted(t[1] for t in timings)[1]
        end = sorted(t[2] for t in timings)[1]
        print(
            f"{name:18}: {held:6.0f} B held per stream, start {start:5.1f} µs, "
            f"end {end:5.1f} µs (medians of 3, {STREAMS} streams)"
        )


def _per_call_us(call: Callable[[], object], count: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(count):
            call()
        best = min(best, (time.perf_counter() - started) / count)
    return 1e6 * best


def decode() -> None:
    request = DeltaDiscoveryRequest(
        node=envoy_node("default.web-1", "web"), type_url="type.googleapis.com/x"
    )
    data = request.SerializeToString()
    kinds: list[tuple[str, Any]] = [
        ("Envoy's type", DeltaDiscoveryRequest),
        ("kuma-cp's", SlimDeltaDiscoveryRequest),
    ]
    for name, kind in kinds:
        decode_one: Callable[[], object] = partial(kind.FromString, data)
        us = _per_call_us(decode_one, 2_000)
        print(f"first request ({len(data)} bytes) as {name:13}: {us:5.1f} µs (best of 5)")


def _receiving(count: int) -> float:
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    client.send_headers(
        1, [(":method", "POST"), (":path", "/x"), (":scheme", "http"), (":authority", "a")]
    )
    server.receive_data(client.data_to_send())
    frame = DataFrame(1, data=b"x" * 100).serialize()
    started = time.perf_counter()
    for _ in range(count):
        for event in server.receive_data(frame):
            if isinstance(event, h2.events.DataReceived):
                server.acknowledge_received_data(event.flow_controlled_length, 1)
        server.data_to_send()
    return 1e6 * (time.perf_counter() - started) / count


def frames() -> None:
    frame_repr.install()
    deferred = h2.connection.repr  # type: ignore[attr-defined]
    results: dict[str, list[float]] = {"formatted at once": [], "formatted if written": []}
    for _ in range(3):
        h2.connection.repr = repr  # type: ignore[attr-defined]
        results["formatted at once"].append(_receiving(20_000))
        h2.connection.repr = deferred  # type: ignore[attr-defined]
        results["formatted if written"].append(_receiving(20_000))
    for name, values in results.items():
        median = sorted(values)[1]
        print(f"h2 receiving a DATA frame, its text {name:21}: {median:4.1f} µs (median of 3)")


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["tasks", "decode", "frames"]
    for part in chosen:
        {"tasks": tasks, "decode": decode, "frames": frames}[part]()
