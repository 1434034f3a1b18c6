"""Benchmark of the etcd store against a real etcd (started here, on free ports, then stopped).

1. initial load: 10,000 Dataplanes (1 inbound, 5 outbounds) in etcd; a fresh store's watch,
   from opening to the Synced marker with every snapshot event consumed (target <= 3 s);
2. watch latency: a write through one store (one kuma-cp) until the event reaches a watch of
   another store (another kuma-cp) on the same etcd; p50 / p99 (target p99 <= 20 ms).

Run: ``python benchmarks/bench_etcd_store.py [--dataplanes N] [--writes N]``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

from kuma.resources import Dataplane, Inbound, Networking, Outbound, ResourceKey
from kuma.store import ResourceEvent, Synced, open_store


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def etcd() -> Iterator[str]:
    """A throwaway single-member etcd; yields its client URL."""
    binary = Path(sys.executable).parent / "etcd"
    data = Path(tempfile.mkdtemp(prefix="bench-etcd-"))
    client, peer = f"http://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"
    process = subprocess.Popen(
        [
            str(binary) if binary.exists() else "etcd",
            f"--data-dir={data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--log-level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{client}/health", timeout=1) as response:
                    if b'"health":"true"' in response.read():
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield client
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        shutil.rmtree(data, ignore_errors=True)


def dataplane(i: int, port: int = 8080) -> Dataplane:
    service = f"svc-{i % 500}"
    return Dataplane(
        name=f"dp-{i}",
        mesh="default",
        networking=Networking(
            address=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
            inbound=(Inbound(port=port, service_port=80, tags={"kuma.io/service": service}),),
            outbound=tuple(
                Outbound(port=10000 + k, tags={"kuma.io/service": f"svc-{(i + k + 1) % 500}"})
                for k in range(5)
            ),
        ),
    )


async def load(endpoint: str, count: int) -> float:
    """Create ``count`` Dataplanes through the store, 64 at a time; returns seconds."""
    started = time.perf_counter()
    async with open_store("etcd", {"endpoints": [endpoint]}) as store:
        send, receive = anyio.create_memory_object_stream[int](count)
        for i in range(count):
            send.send_nowait(i)
        send.close()

        async def creator() -> None:
            async for i in receive:
                await store.create(dataplane(i))

        async with anyio.create_task_group() as tg:
            for _ in range(64):
                tg.start_soon(creator)
    return time.perf_counter() - started


async def snapshot(endpoint: str, count: int) -> float:
    """Open a fresh store and its watch; seconds until Synced, every event consumed."""
    started = time.perf_counter()
    async with open_store("etcd", {"endpoints": [endpoint]}) as store, store.watch() as events:
        seen = 0
        async for item in events:
            if isinstance(item, Synced):
                break
            seen += 1
    elapsed = time.perf_counter() - started
    assert seen == count, f"snapshot had {seen} events, expected {count}"
    return elapsed


async def latency(endpoint: str, writes: int) -> list[float]:
    """Seconds from the start of each update (store A) to its event at a watch (store B)."""
    samples: list[float] = []
    async with (
        open_store("etcd", {"endpoints": [endpoint]}) as writer,
        open_store("etcd", {"endpoints": [endpoint]}) as watcher,
        watcher.watch() as events,
    ):
        async for item in events:
            if isinstance(item, Synced):
                break
        key = ResourceKey("Dataplane", "default", "dp-0")
        version = (await writer.get(key)).meta.version
        for n in range(writes):
            started = time.perf_counter()
            stored = await writer.update(dataplane(0, port=20000 + n), version=version)
            version = stored.meta.version
            with anyio.fail_after(5):
                event = await anext(events)
            samples.append(time.perf_counter() - started)
            assert isinstance(event, ResourceEvent)
            assert event.meta.version == version
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(dataplanes: int, writes: int, rounds: int) -> None:
    with etcd() as endpoint:
        seconds = await load(endpoint, dataplanes)
        print(f"load: {dataplanes} Dataplanes created in {seconds:.2f} s "
              f"({dataplanes / seconds:.0f}/s, 64 concurrent writers)")  # fmt: skip
        times = [await snapshot(endpoint, dataplanes) for _ in range(rounds)]
        print(f"initial snapshot to Synced: median {statistics.median(times):.3f} s, "
              f"rounds {' '.join(f'{t:.3f}' for t in times)} s (target <= 3 s)")  # fmt: skip
        samples = await latency(endpoint, writes)
        p50, p99 = percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000
        worst = max(samples) * 1000
        print(f"watch latency write->event over {writes} writes: p50 {p50:.2f} ms, "
              f"p99 {p99:.2f} ms, max {worst:.2f} ms (target p99 <= 20 ms)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataplanes", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.dataplanes, args.writes, args.rounds)
