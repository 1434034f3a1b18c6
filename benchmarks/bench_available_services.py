"""Cost of a ZoneIngress ``availableServices`` update in a zone of 1,000 services.

A zone (``zone-1``) with S services of I healthy instances each (one Dataplane per instance,
``kuma.io/service`` and ``version`` tags) and one ZoneIngress. Each change moves one Dataplane
between ``version: v1`` and ``v2`` (one entry's count changes, another entry appears or goes:
the list really changes). Per change it measures, in-process:

- **incremental**: the engine observer's work for the event (kuma/xds/engine/available_services.py:
  ``observe`` + ``settled``) plus building the list (``entries``) and finding the stale
  ingresses (``stale``: compares the stored list with the new one);
- **Kuma's recompute**: the full list from every Dataplane (``from_scratch``: what Kuma does
  every ``ingressUpdateInterval``, change or not);
- **write**: validating the new ZoneIngress and encoding it as the etcd store stores it
  (bytes written: the whole resource, whatever changed);
- **KDS**: the bytes the zone sends to global: the whole resource (``to_global`` +
  ``codec.encode``: Kuma's way, and ours before kuma/kds/parts.py), and the changed entries
  only (``parts.encode_all`` and the diff the outbox makes: what travels now).

    python benchmarks/bench_available_services.py [--services 1000] [--instances 2] [--runs 200]

The coalescing (a burst of changes is one write) is a test (tests/cp/test_ingress_services.py);
here ``--burst`` changes are applied before one write to show the write count and bytes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

import msgspec

from kuma.kds import codec, parts
from kuma.kds.mapping import to_global
from kuma.multizone import stamp_zone
from kuma.multizone.available_services import from_scratch
from kuma.resources import Dataplane, Mesh, ResourceMeta, ZoneIngress, check, from_document
from kuma.store import Operation, ResourceEvent
from kuma.xds.engine import Engine
from kuma.xds.engine.available_services import AvailableServicesIndex
from kuma.xds.engine.handlers import default_handlers
from kuma_etcd_store.layout import encode_value

ZONE = "zone-1"
NOW = datetime(2026, 12, 4, tzinfo=UTC)
META = ResourceMeta("1", NOW, NOW)


def dataplane(service: int, instance: int, version: str) -> Dataplane:
    resource = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": f"svc-{service}-{instance}",
            "networking": {
                "address": f"10.{service // 250}.{service % 250}.{instance + 1}",
                "inbound": [
                    {
                        "port": 10000,
                        "servicePort": 8080,
                        "tags": {"kuma.io/service": f"svc-{service}", "version": version},
                    }
                ],
            },
        }
    )
    assert isinstance(resource, Dataplane)
    return resource


def ingress() -> ZoneIngress:
    resource = from_document(
        {
            "type": "ZoneIngress",
            "name": "ingress-1",
            "zone": ZONE,
            "networking": {"address": "10.255.0.1", "port": 10001},
        }
    )
    assert isinstance(resource, ZoneIngress)
    return resource


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1000)
    args = parser.parse_args()

    engine = Engine(handlers=default_handlers(zone=ZONE))
    writes: list[int] = []
    index = AvailableServicesIndex(ZONE, on_change=lambda: writes.append(1))
    engine.inputs.add_observer(index)
    mesh = from_document({"type": "Mesh", "name": "default"})
    assert isinstance(mesh, Mesh)
    current = {
        (s, i): dataplane(s, i, "v1") for s in range(args.services) for i in range(args.instances)
    }
    events = [
        ResourceEvent(Operation.CREATE, mesh, META, 1),
        *(ResourceEvent(Operation.CREATE, dp, META, 1) for dp in current.values()),
        ResourceEvent(Operation.CREATE, ingress(), META, 1),
    ]
    engine.apply_now(events)
    stored = ingress()
    print(
        f"{args.services} services x {args.instances} instances: "
        f"{len(index.entries())} entries, {len(current)} Dataplanes"
    )

    incremental: list[float] = []
    observe: list[float] = []
    recompute: list[float] = []
    write: list[float] = []
    kds: list[float] = []
    written_bytes: list[int] = []
    kds_bytes: list[int] = []
    parts_cpu: list[float] = []
    parts_bytes: list[int] = []
    first = to_global(stored, ZONE)
    assert first is not None
    sent = {
        p.name: p.version
        for p in parts.encode_all(
            msgspec.structs.replace(first, available_services=index.entries())
        )
    }
    meshes = engine.inputs.meshes
    for run in range(args.runs):
        key = (run * 7919 % args.services, run % args.instances)
        old = current[key]
        version = (
            "v2" if old.networking and old.networking.inbound[0].tags["version"] == "v1" else "v1"
        )
        new = current[key] = dataplane(*key, version)
        event = ResourceEvent(Operation.UPDATE, new, META, 1)
        # The engine's own Dataplane handling, then (timed) the observer as the engine calls it.
        meshes[new.mesh].put(stamp_zone(new, ZONE, strict=False))
        started = time.perf_counter()
        index.observe(event, meshes)
        index.settled()
        observe.append(time.perf_counter() - started)
        entries = index.entries()
        stale = [i for i in [stored] if i.available_services != entries]
        incremental.append(time.perf_counter() - started)
        assert stale, "the list did not change"

        started = time.perf_counter()
        expected = from_scratch([mesh], meshes["default"].dataplanes.values(), (), ZONE)
        recompute.append(time.perf_counter() - started)
        assert expected == entries

        started = time.perf_counter()
        stored = msgspec.structs.replace(stored, available_services=entries)
        check(stored)
        value = encode_value(stored, NOW, NOW)
        write.append(time.perf_counter() - started)
        written_bytes.append(len(value))

        shaped = to_global(stored, ZONE)
        assert shaped is not None
        started = time.perf_counter()
        encoded = codec.encode(shaped)
        kds.append(time.perf_counter() - started)
        kds_bytes.append(len(encoded.body))
        # What the outbox does (kuma/kds/parts.py): encode the parts, announce changed ones.
        started = time.perf_counter()
        now = {p.name: p for p in parts.encode_all(shaped)}
        moved = [p for n, p in now.items() if sent.get(n) != p.version]
        gone = [n for n in sent if n not in now]
        parts_cpu.append(time.perf_counter() - started)
        parts_bytes.append(sum(len(p.body) + len(p.name) for p in moved) + sum(map(len, gone)))
        sent = {n: p.version for n, p in now.items()}

    print(f"runs {args.runs}, medians per change:")
    print(f"  incremental (observe + list + stale check): {median_ms(incremental):.3f} ms")
    print(f"    of which observe + settled (the index):   {median_ms(observe):.3f} ms")
    print(f"  Kuma's full recompute:                      {median_ms(recompute):.3f} ms")
    ratio = statistics.median(recompute) / statistics.median(incremental)
    print(f"  recompute / incremental:                    {ratio:.0f}x")
    print(
        f"  write (validate + encode for etcd):         {median_ms(write):.3f} ms, "
        f"{statistics.median(written_bytes):,.0f} bytes"
    )
    print(
        f"  KDS, whole resource (Kuma's way):           {median_ms(kds):.3f} ms, "
        f"{statistics.median(kds_bytes):,.0f} bytes"
    )
    print(
        f"  KDS, changed entries only (kds/parts.py):   {median_ms(parts_cpu):.3f} ms, "
        f"{statistics.median(parts_bytes):,.0f} bytes (bodies + names)"
    )

    # A burst: many Dataplane changes in a few engine batches, then the writer's one pass.
    writes.clear()
    before = index.entries()
    started = time.perf_counter()
    for run in range(args.burst):
        key = (run % args.services, 0)
        new = current[key] = dataplane(*key, "v3")
        engine.apply_now([ResourceEvent(Operation.UPDATE, new, META, 1)])
    burst_cpu = time.perf_counter() - started
    after = index.entries()
    assert after != before
    size = len(encode_value(msgspec.structs.replace(stored, available_services=after), NOW, NOW))
    print(
        f"burst of {args.burst} changes: {len(writes)} change notices (one per engine batch), "
        f"then 1 write of {size:,} "
        f"bytes after the writer's quiet window; engine+observer {burst_cpu * 1000:.0f} ms in all"
    )


if __name__ == "__main__":
    main()
