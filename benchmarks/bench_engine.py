"""Engine cost of one endpoint change, versus mesh size and versus a naive baseline.

A mesh of N proxies (1 inbound, 5 outbounds each, services of 10 instances), every proxy
connected. Exactly K proxies consume the service ``target``. A change flips the health of one
``target`` instance, which touches K proxies whatever N is.

* engine: CPU time of ``Engine.apply`` for that change (median over runs), at N = 1,000 and
  N = 10,000; the ratio between the two shows whether work follows the change or the mesh.
* baseline: what a snapshot-per-proxy design does per change (Kuma's 1 s refresh regenerates
  every proxy of the mesh when anything in it changed): generate and serialize every proxy's
  full config from scratch.

Run: ``python benchmarks/bench_engine.py [--sizes 1000,10000] [--k 50] [--runs 30]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime

from kuma.resources import Dataplane, ResourceMeta, from_document
from kuma.store import Operation, ResourceEvent
from kuma.xds.engine import Engine
from kuma.xds.engine.watches import Subscription
from kuma.xds.generate import StaticMeshView, generate_proxy

META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
INSTANCES = 10


def dataplane(index: int, service: str, outbounds: list[str], ready: bool = True) -> Dataplane:
    resource = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": f"dp-{index}",
            "networking": {
                "address": f"10.{index // 65536}.{index // 256 % 256}.{index % 256}",
                "inbound": [
                    {
                        "port": 10000,
                        "servicePort": 8080,
                        "health": {"ready": ready},
                        "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"},
                    }
                ],
                "outbound": [
                    {"port": 20000 + i, "tags": {"kuma.io/service": s}}
                    for i, s in enumerate(outbounds)
                ],
            },
        }
    )
    assert isinstance(resource, Dataplane)
    return resource


def build_mesh(n: int, k: int, seed: int = 7) -> list[Dataplane]:
    rng = random.Random(seed)
    services = [f"svc-{i}" for i in range(max(1, n // INSTANCES - 1))] + ["target"]
    others = [s for s in services if s != "target"]
    consumers = set(rng.sample(range(INSTANCES, n), k))
    result = []
    for i in range(n):
        service = "target" if i < INSTANCES else services[i % (len(services) - 1)]
        outbounds = rng.sample(others, 5 if i not in consumers else 4)
        if i in consumers:
            outbounds.append("target")
        result.append(dataplane(i, service, outbounds))
    return result


def flip(dataplanes: list[Dataplane], run: int) -> Dataplane:
    """The change: instance 0 of ``target`` goes unhealthy, then healthy again."""
    original = dataplanes[0]
    assert original.networking is not None
    return dataplane(0, "target", [o.service for o in original.networking.outbound], run % 2 == 1)


def measure_engine(n: int, k: int, runs: int) -> tuple[float, float, int]:
    dataplanes = build_mesh(n, k)
    engine = Engine()
    engine.apply_now([ResourceEvent(Operation.CREATE, d, META, 1) for d in dataplanes])
    subs: list[Subscription] = [engine.subscribe(f"default.{d.name}") for d in dataplanes]
    for sub in subs:
        sub.take_changes()
    cpu: list[float] = []
    notified = 0
    for run in range(runs):
        event = ResourceEvent(Operation.UPDATE, flip(dataplanes, run), META, run + 2)
        started = time.process_time()
        stats = engine.apply_now([event])
        cpu.append(time.process_time() - started)
        notified = stats.proxies_notified
        for sub in subs:
            sub.take_changes()
    return statistics.median(cpu), max(cpu), notified


def measure_baseline(n: int, k: int, runs: int) -> float:
    dataplanes = build_mesh(n, k)
    cpu: list[float] = []
    for run in range(runs):
        dataplanes[0] = flip(dataplanes, run)
        started = time.process_time()
        view = StaticMeshView(dataplanes)
        for proxy in dataplanes:
            for by_name in generate_proxy(proxy, view, 9901).values():
                for message in by_name.values():
                    message.SerializeToString(deterministic=True)
        cpu.append(time.process_time() - started)
    return statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--baseline-runs", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    engine_cpu: dict[int, float] = {}
    print(f"endpoint change touching k={args.k} proxies; medians of CPU time per change")
    for n in sizes:
        median, worst, notified = measure_engine(n, args.k, args.runs)
        engine_cpu[n] = median
        baseline = measure_baseline(n, args.k, args.baseline_runs)
        print(
            f"N={n:>6}: engine {median * 1e6:9.0f} us (max {worst * 1e6:.0f} us, "
            f"{notified} proxies notified)   baseline {baseline * 1e3:9.1f} ms   "
            f"baseline/engine = {baseline / median:,.0f}x"
        )
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(
            f"engine CPU per change N={large} / N={small}: "
            f"{engine_cpu[large] / engine_cpu[small]:.2f} (target <= 1.5)"
        )


if __name__ == "__main__":
    main()
