"""A policy change costs what it selects: CPU time of ``Engine.apply`` for a MeshTimeout
update that selects k = 100 proxies, with N = 1,000 and N = 10,000 connected proxies (1
inbound, 5 outbounds each, Kuma's default policies in the mesh). The policy's targetRef is a
MeshSubset on a tag only the k proxies carry; each run changes its request timeout (shapes
outbound listeners) or, with ``--field connection``, its connection timeout (shapes clusters
only: kuma-load's policy scenario).

    python benchmarks/bench_policy_change.py [--runs 10] [--field request|connection]
                                             [--sizes 1000,10000] [--cp-gc]

``--cp-gc``: kuma-cp's garbage-collector thresholds (``kuma.cp.cli.GC_THRESHOLDS``) instead
of Python's defaults, which collect the whole heap far more often at 10,000 proxies.

In-process (no xDS transport): the engine's work only. The end-to-end p99 at the sidecars
under kuma-load is not measured here.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_engine import build_mesh

from kuma.cp.cli import GC_THRESHOLDS
from kuma.policies import default_policies
from kuma.resources import Dataplane, Mesh, ResourceMeta, from_document
from kuma.store import Operation, ResourceEvent
from kuma.xds.engine import Engine

META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
SELECTED = 100


def _tagged(dataplane: Dataplane) -> Dataplane:
    document = {
        "type": "Dataplane",
        "mesh": dataplane.mesh,
        "name": dataplane.name,
        "networking": {
            "address": dataplane.networking.address if dataplane.networking else "",
            "inbound": [
                {
                    "port": 10000,
                    "servicePort": 8080,
                    "tags": {**i.tags, "team": "payments"},
                }
                for i in (dataplane.networking.inbound if dataplane.networking else ())
            ],
            "outbound": [
                {"port": o.port, "tags": dict(o.tags)}
                for o in (dataplane.networking.outbound if dataplane.networking else ())
            ],
        },
    }
    resource = from_document(document)
    assert isinstance(resource, Dataplane)
    return resource


def _policy(run: int, field: str) -> ResourceEvent:
    default: dict[str, Any] = (
        {"http": {"requestTimeout": f"{run + 2}s"}}
        if field == "request"
        else {"connectionTimeout": f"{run + 2}s"}
    )
    policy = from_document(
        {
            "type": "MeshTimeout",
            "mesh": "default",
            "name": "payments",
            "spec": {
                "targetRef": {"kind": "MeshSubset", "tags": {"team": "payments"}},
                "to": [
                    {
                        "targetRef": {"kind": "Mesh"},
                        "default": default,
                    }
                ],
            },
        }
    )
    operation = Operation.CREATE if run == 0 else Operation.UPDATE
    return ResourceEvent(operation, policy, META, run + 10)


def measure(n: int, runs: int, field: str) -> tuple[float, float, int]:
    dataplanes = build_mesh(n, 50)
    dataplanes = [_tagged(d) if i % (n // SELECTED) == 1 else d for i, d in enumerate(dataplanes)]
    engine = Engine()
    events = [ResourceEvent(Operation.CREATE, d, META, 1) for d in dataplanes]
    events += [
        ResourceEvent(Operation.CREATE, p, META, 1) for p in default_policies(Mesh(name="default"))
    ]
    engine.apply_now(events)
    subs = [engine.subscribe(f"default.{d.name}") for d in dataplanes]
    for sub in subs:
        sub.take_changes()
    cpu: list[float] = []
    assembled = 0
    for run in range(runs):
        started = time.process_time()
        stats = engine.apply_now([_policy(run, field)])
        cpu.append(time.process_time() - started)
        assembled = stats.proxies_assembled
        for sub in subs:
            sub.take_changes()
    return statistics.median(cpu), max(cpu), assembled


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--field", choices=("request", "connection"), default="request")
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--cp-gc", action="store_true")
    args = parser.parse_args()
    if args.cp_gc:
        gc.set_threshold(*GC_THRESHOLDS)
    sizes = [int(size) for size in args.sizes.split(",")]
    results = {}
    for n in sizes:
        median, worst, assembled = measure(n, args.runs, args.field)
        results[n] = median
        print(
            f"N={n:>6}: policy change {median * 1e3:.1f} ms (max {worst * 1e3:.1f} ms), "
            f"{assembled} proxies re-assembled"
        )
    if len(sizes) > 1:
        first, last = sizes[0], sizes[-1]
        print(f"CPU per change N={last} / N={first}: {results[last] / results[first]:.2f}")


if __name__ == "__main__":
    main()
