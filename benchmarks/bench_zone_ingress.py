"""What one endpoint change costs a connected ZoneIngress (issue 12).

An ingress carries N services of one mTLS mesh (two Dataplanes each, versions v0 and v1, all
listed in its availableServices); a new Dataplane of one service arrives per batch. Reports the
first assembly, then the engine batch time per change (median, p90) and checks that the
ingress is told of exactly one changed resource, that service's ClusterLoadAssignment.

Run: ``python benchmarks/bench_zone_ingress.py [--services 1000] [--changes 30]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from kuma.resources import Mesh, ResourceMeta, from_document
from kuma.resources.model import Resource
from kuma.store import Operation, ResourceEvent
from kuma.xds import types
from kuma.xds.engine import Engine

META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def put(resource: Resource) -> ResourceEvent:
    return ResourceEvent(Operation.CREATE, resource, META, 1)


def dataplane(name: str, address: str, service: str, version: str) -> Resource:
    tags = {"kuma.io/service": service, "version": version}
    document: dict[str, Any] = {
        "type": "Dataplane",
        "mesh": "m",
        "name": name,
        "networking": {
            "address": address,
            "inbound": [{"port": 8080, "servicePort": 80, "tags": tags}],
        },
    }
    return from_document(document)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=30)
    args = parser.parse_args()
    n = args.services
    mtls = {"enabledBackend": "ca", "backends": [{"name": "ca", "type": "builtin"}]}
    events = [put(Mesh(name="m", mtls=mtls))]
    listed = []
    for i in range(n):
        for j in range(2):
            address = f"10.{i // 250}.{i % 250}.{j + 1}"
            events.append(put(dataplane(f"s{i}-{j}", address, f"s{i}", f"v{j}")))
            tags = {"kuma.io/service": f"s{i}", "version": f"v{j}"}
            listed.append({"mesh": "m", "tags": tags, "instances": 1})
    networking = {"address": "10.9.9.9", "port": 10001}
    ingress = {"type": "ZoneIngress", "name": "zi", "networking": networking}
    events.append(put(from_document({**ingress, "availableServices": listed})))
    engine = Engine()
    engine.apply_now(events)
    started = time.perf_counter()
    subscription = engine.subscribe(".zi")
    first = time.perf_counter() - started
    subscription.take_changes()
    times = []
    for k in range(args.changes):
        service = f"s{k % n}"
        change = put(dataplane(f"extra-{k}", f"10.200.{k // 250}.{k % 250 + 1}", service, "v0"))
        started = time.perf_counter()
        engine.apply_now([change])
        times.append(time.perf_counter() - started)
        told = dict(subscription.take_changes())
        assert told == {types.ENDPOINT: {f"m:{service}"}}, told
    times.sort()
    print(
        f"services={n} first_assembly_ms={first * 1000:.1f} "
        f"change_median_ms={statistics.median(times) * 1000:.3f} "
        f"change_p90_ms={times[int(len(times) * 0.9)] * 1000:.3f} told=1 CLA per change"
    )


if __name__ == "__main__":
    main()
