"""What a policy change costs a connected ZoneEgress (issue 16: Kuma's policies at the egress).

One mTLS mesh routing through egresses with N ExternalServices and 20 MeshFaultInjections,
each selecting one of them; an egress (``.egress-1``) is connected. Per batch, one
MeshFaultInjection changes: either one selecting an ExternalService (the egress is
re-assembled, checked) or one selecting a sidecar service only (the egress is not, checked).
Reports the engine batch time of each (median, p90).

Run: ``python benchmarks/bench_zone_egress_policies.py [--services 10,100,300] [--changes 30]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kuma.resources import ResourceMeta, from_document
from kuma.resources.model import Resource
from kuma.store import Operation, ResourceEvent
from kuma.xds.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.xds.test_engine_zone_egress import fault

META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def put(document: dict[str, Any]) -> ResourceEvent:
    resource = from_document(document)
    assert isinstance(resource, Resource)
    return ResourceEvent(Operation.CREATE, resource, META, 1)


def in_mesh(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "mesh": "m"}


def setup(services: int) -> Engine:
    backend = {"name": "ca-1", "type": "builtin"}
    mesh = {
        "type": "Mesh",
        "name": "m",
        "mtls": {"enabledBackend": "ca-1", "backends": [backend]},
        "routing": {"zoneEgress": True},
    }
    egress = {
        "type": "ZoneEgress",
        "name": "egress-1",
        "networking": {"address": "10.0.0.9", "port": 10002},
    }
    events = [put(mesh), put(egress)]
    for i in range(services):
        external = {
            "type": "ExternalService",
            "mesh": "m",
            "name": f"es-{i}",
            "networking": {"address": f"es-{i}.example:80"},
            "tags": {"kuma.io/service": f"es-{i}", "kuma.io/protocol": "http"},
        }
        events.append(put(external))
    events += [put(in_mesh(fault(f"f-{i}", f"es-{i % services}"))) for i in range(20)]
    engine = Engine()
    engine.apply_now(events)
    engine.subscribe(".egress-1").take_changes()
    return engine


def timed(engine: Engine, name: str, service: str, changes: int, assembled: int) -> list[float]:
    times = []
    for k in range(changes):
        event = put(in_mesh(fault(name, service, status=500 + k % 2)))
        start = time.perf_counter()
        engine.apply_now([event])
        times.append(time.perf_counter() - start)
        assert engine.last_batch.proxies_assembled == assembled
    return times


def report(label: str, times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"{label} median {statistics.median(times) * 1e3:.2f} ms, p90 {p90 * 1e3:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", default="10,100,300")
    parser.add_argument("--changes", type=int, default=30)
    args = parser.parse_args()
    for services in (int(n) for n in args.services.split(",")):
        engine = setup(services)
        selecting = timed(engine, "f-0", "es-0", args.changes, 1)
        other = timed(engine, "x", "web", args.changes, 0)
        print(
            f"{services} ExternalServices: "
            + report("selecting one (egress re-assembled)", selecting)
            + "; "
            + report("selecting none (not)", other)
        )


if __name__ == "__main__":
    main()
