"""Benchmark of the directory store (run by hand: ``python benchmarks/bench_directory_store.py``).

1. Initial load: a folder of N Dataplane files (1 inbound, 5 outbounds each) to a complete
   snapshot, i.e. from opening the store to the ``Synced`` marker of a first watch.
2. Event latency: a file written (alternately created and edited) until its event is delivered
   by ``watch()``; p50 and p99 over the writes, with the default debounce (50 ms). Each write
   follows the previous event at once, which is the worst phase of watchfiles' polling step:
   the numbers are close to the upper bound.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from kuma.store import ResourceEvent, Synced, open_store


def dataplane_yaml(index: int, port: int = 8080) -> str:
    outbounds = "".join(
        f"  - port: {10001 + j}\n    tags:\n      kuma.io/service: backend-{(index + j) % 500}\n"
        for j in range(5)
    )
    return (
        f"type: Dataplane\nmesh: default\nname: dp-{index}\nnetworking:\n"
        f"  address: 10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}\n"
        f"  inbound:\n  - port: {port}\n    servicePort: 80\n    tags:\n"
        f"      kuma.io/service: web-{index % 500}\n      kuma.io/protocol: http\n"
        f"  outbound:\n{outbounds}"
    )


def populate(folder: Path, count: int) -> None:
    for i in range(count):
        # 100 files per sub-folder, as a real layout by team or service would spread them.
        sub = folder / f"group-{i // 100:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"dp-{i}.yaml").write_text(dataplane_yaml(i))


async def initial_load(folder: Path, count: int) -> tuple[float, float]:
    """Seconds until the store is open (folder scanned) and until the first watch is Synced."""
    started = time.perf_counter()
    async with open_store("directory", {"path": str(folder)}) as store:
        opened = time.perf_counter() - started
        async with store.watch() as events:
            seen = 0
            async for item in events:
                if isinstance(item, Synced):
                    break
                seen += 1
            synced = time.perf_counter() - started
        assert seen == count, f"snapshot had {seen} resources, expected {count}"
        assert not store.problems(), store.problems()[:3]
    return opened, synced


async def event_latency(folder: Path, writes: int) -> list[float]:
    latencies: list[float] = []
    async with open_store("directory", {"path": str(folder)}) as store, store.watch() as events:
        async for item in events:
            if isinstance(item, Synced):
                break
        for i in range(writes):
            # Alternate new files and edits of an existing file (atomic replace, as editors do).
            path = folder / f"latency-{i // 2}.yaml"
            text = dataplane_yaml(1_000_000 + i // 2, port=8080 + i % 2)
            started = time.perf_counter()
            temp = folder / f".latency-{i}.tmp"
            temp.write_text(text)
            os.replace(temp, path)
            with anyio.fail_after(5):
                item = await anext(events)
            latencies.append(time.perf_counter() - started)
            assert isinstance(item, ResourceEvent), item
            assert item.key.name == f"dp-{1_000_000 + i // 2}", item
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-directory-") as temp:
        folder = Path(temp) / "resources"
        folder.mkdir()
        populate(folder, args.files)
        opened, synced = await initial_load(folder, args.files)
        print(
            f"initial load: {args.files} Dataplane files -> Synced in {synced:.2f} s "
            f"(store open after {opened:.2f} s)"
        )

    with tempfile.TemporaryDirectory(prefix="bench-directory-") as temp:
        latencies = await event_latency(Path(temp), args.writes)
        ms = [1000 * v for v in latencies]
        print(
            f"event latency over {len(ms)} writes: p50 {percentile(ms, 0.5):.1f} ms, "
            f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms, "
            f"mean {statistics.fmean(ms):.1f} ms"
        )


if __name__ == "__main__":
    anyio.run(main)
