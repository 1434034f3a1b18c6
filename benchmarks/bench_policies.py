"""Policy resolution for one proxy: which of a mesh's 20 policies select it, in Kuma's order,
and the rules they make (``kuma.policies.resolve``), plus computing the merged conf of each
kind for one outbound service (what generation asks). Target: resolution ≤ 50 µs.

    python benchmarks/bench_policies.py [--runs 20000]

The mesh holds Kuma's 4 default policies and 16 more of the 3 implemented kinds, with
overlapping targetRefs (Mesh, MeshSubset, MeshService, MeshServiceSubset), most of them
selecting the proxy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from kuma.policies import default_policies, resolve
from kuma.policies.matching import ordered
from kuma.resources import Dataplane, Mesh, from_document, validate
from kuma.resources.model import Policy

_CONFS: dict[str, dict[str, Any]] = {
    "MeshTimeout": {"idleTimeout": "20s", "http": {"requestTimeout": "3s"}},
    "MeshRetry": {"http": {"numRetries": 3, "retryOn": ["5xx"]}},
    "MeshCircuitBreaker": {"connectionLimits": {"maxConnections": 7}},
}
_TOPS: list[dict[str, Any]] = [
    {"kind": "Mesh"},
    {"kind": "MeshSubset", "tags": {"version": "v1"}},
    {"kind": "MeshService", "name": "web"},
    {"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v1"}},
    {"kind": "MeshService", "name": "other"},
]


def _policies() -> list[Policy]:
    found = list(default_policies(Mesh(name="default")))
    kinds = sorted(_CONFS)
    for i in range(16):
        kind = kinds[i % 3]
        to_ref = {"kind": "Mesh"} if i % 2 else {"kind": "MeshService", "name": "backend"}
        spec: dict[str, Any] = {
            "targetRef": _TOPS[i % len(_TOPS)],
            "to": [{"targetRef": to_ref, "default": _CONFS[kind]}],
        }
        if kind != "MeshRetry":
            spec["from"] = [{"targetRef": {"kind": "Mesh"}, "default": _CONFS[kind]}]
        policy = from_document({"type": kind, "mesh": "default", "name": f"p-{i}", "spec": spec})
        assert isinstance(policy, Policy)
        assert not validate(policy), policy
        found.append(policy)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20000)
    args = parser.parse_args()
    dataplane = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "web-1",
            "networking": {
                "address": "10.0.0.1",
                "inbound": [{"port": 10000, "tags": {"kuma.io/service": "web", "version": "v1"}}],
                "outbound": [{"port": 20000, "tags": {"kuma.io/service": "backend"}}],
            },
        }
    )
    assert isinstance(dataplane, Dataplane)
    unsorted: dict[str, list[Policy]] = {}
    for policy in _policies():
        unsorted.setdefault(policy.TYPE, []).append(policy)
    # As the engine keeps them: each kind's policies in Kuma's order, once per change.
    by_kind = {kind: ordered(found) for kind, found in unsorted.items()}
    total = sum(len(v) for v in by_kind.values())
    matched = resolve(dataplane, by_kind, presorted=True)
    selected = sum(len(k.policies) for k in matched.by_kind.values())
    resolution: list[float] = []
    confs: list[float] = []
    element = {"kuma.io/service": "backend"}
    for _ in range(args.runs):
        start = time.perf_counter()
        matched = resolve(dataplane, by_kind, presorted=True)
        middle = time.perf_counter()
        for kind in matched.by_kind.values():
            kind.to_conf(element)
        end = time.perf_counter()
        resolution.append(middle - start)
        confs.append(end - middle)
    resolution.sort()
    confs.sort()
    p90 = int(len(resolution) * 0.9)
    print(f"policies in the mesh: {total}, selecting the proxy: {selected}")
    print(
        f"resolve: median {statistics.median(resolution) * 1e6:.1f} us, "
        f"p90 {resolution[p90] * 1e6:.1f} us over {args.runs} runs"
    )
    print(
        f"merged conf of every kind for one outbound: median "
        f"{statistics.median(confs) * 1e6:.1f} us, p90 {confs[p90] * 1e6:.1f} us"
    )


if __name__ == "__main__":
    main()
