"""Where a connected proxy's memory goes in the engine, by allocation site (issue 15).

Builds kuma-load's mesh (kuma/load/mesh.py: the same Dataplanes, services and policies as a
``kuma-load run``) in an in-process :class:`~kuma.xds.engine.Engine`, subscribes every proxy
and takes their changes (so each proxy's assembled config is held, as for a connected stream),
and reports what the engine holds per proxy with tracemalloc, grouped by the line that
allocated it. The transport's share (TLS connection, HTTP/2 and gRPC stream, the delta stream's
sent versions) is not here: kuma-load's RSS per proxy minus this is that share.

Run: ``python benchmarks/bench_memory.py [--proxies 2000] [--default-policies] [--every-policy]
[--top 15]``.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
from datetime import UTC, datetime

from kuma.load.mesh import MeshSpec, Plan, node_id
from kuma.resources import ResourceMeta, from_document
from kuma.store import Operation, ResourceEvent
from kuma.xds.engine import Engine

META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def _events(plan: Plan) -> list[ResourceEvent]:
    documents = [plan.mesh_document(), *plan.policy_documents()]
    documents += [plan.document(i) for i in range(plan.count)]
    return [ResourceEvent(Operation.CREATE, from_document(d), META, 1) for d in documents]


def measure(spec: MeshSpec, top: int) -> None:
    plan = Plan(spec)
    events = _events(plan)
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    engine = Engine()
    engine.apply_now(events)
    subs = [engine.subscribe(node_id(spec, i)) for i in range(plan.count)]
    held = [sub.take_changes() for sub in subs]
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"proxies {plan.count}: engine holds {total / plan.count / 1024:.1f} KB per proxy")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        where = f"{frame.filename.split('/kuma/')[-1]}:{frame.lineno}"
        share = stat.size_diff / plan.count / 1024
        print(f"  {share:7.2f} KB/proxy  {stat.count_diff:9d} blocks  {where}")
    del held, subs, engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proxies", type=int, default=2000)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--default-policies", action="store_true")
    parser.add_argument("--every-policy", action="store_true")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    spec = MeshSpec(
        proxies=args.proxies,
        instances=args.instances,
        target_consumers=min(100, args.proxies // 10),
        default_policies=args.default_policies,
        every_policy=args.every_policy,
    )
    measure(spec, args.top)


if __name__ == "__main__":
    main()
