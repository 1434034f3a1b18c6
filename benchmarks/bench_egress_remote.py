"""What one remote entry change costs a connected ZoneEgress carrying other zones' services
(issue 12, ``routing.zoneEgress``).

Zone-1's engine holds zone-2's ingress listing N services of one mesh routing through egresses,
and a connected egress (passthrough chains, clusters and CLAs per remote service). Per batch
one service's instances change in zone-2's list; reports the engine batch time per change
(median, p90) and checks that the egress is told of exactly that service's
ClusterLoadAssignment.

Run: ``python benchmarks/bench_egress_remote.py [--services 1000] [--changes 30]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from kuma.resources import ResourceMeta, from_document
from kuma.resources.model import Resource
from kuma.store import Operation, ResourceEvent
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.engine.handlers import default_handlers

META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
CA = {"enabledBackend": "ca", "backends": [{"name": "ca", "type": "builtin"}]}


def put(document: dict[str, Any]) -> ResourceEvent:
    resource = from_document(document)
    assert isinstance(resource, Resource)
    return ResourceEvent(Operation.CREATE, resource, META, 1)


def zone_2_ingress(instances: dict[str, int]) -> dict[str, Any]:
    available = [
        {"mesh": "m", "instances": n, "tags": {"kuma.io/service": s, "kuma.io/zone": "zone-2"}}
        for s, n in instances.items()
    ]
    networking = {"address": "10.9.0.1", "port": 10001}
    networking |= {"advertisedAddress": "192.0.2.2", "advertisedPort": 10001}
    return {
        "type": "ZoneIngress",
        "name": "zi-2",
        "zone": "zone-2",
        "networking": networking,
        "availableServices": available,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=30)
    args = parser.parse_args()
    engine = Engine(handlers=default_handlers(zone="zone-1"))
    instances = {f"svc-{i}": 1 for i in range(args.services)}
    egress: dict[str, Any] = {"type": "ZoneEgress", "name": "egress-1"}
    egress["networking"] = {"address": "10.0.0.9", "port": 10002}
    mesh = {"type": "Mesh", "name": "m", "mtls": CA, "routing": {"zoneEgress": True}}
    engine.apply_now([put(mesh), put(zone_2_ingress(instances)), put(egress)])
    started = time.perf_counter()
    subscription = engine.subscribe(".egress-1")
    print(f"first assembly: {(time.perf_counter() - started) * 1000:.0f} ms")
    subscription.take_changes()
    times = []
    for change in range(args.changes):
        instances["svc-7"] = 2 + change
        started = time.perf_counter()
        engine.apply_now([put(zone_2_ingress(instances))])
        times.append(time.perf_counter() - started)
        assert subscription.take_changes() == {types.ENDPOINT: {"m:svc-7"}}
    times.sort()
    median, p90 = statistics.median(times), times[int(len(times) * 0.9)]
    print(f"{args.services} services: per change median {median * 1000:.2f} ms", end="")
    print(f", p90 {p90 * 1000:.2f} ms")


if __name__ == "__main__":
    main()
