"""Cost of one directory-store update of a ZoneIngress whose list holds N services, with its
file in YAML (as the store wrote it before, and as an operator may still write it) and in JSON
(as the store now creates it: kuma_directory_store.files.JSON_KINDS). A cross-zone change
makes three such writes (the zone's list, global's copy, the other zone's copy).

Run: ``python benchmarks/bench_ingress_file_write.py [--services 100 500] [--writes 20]``.
Prints the median wall time and the process CPU per update (the update's thread included).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import orjson

from kuma.resources import ResourceKey, ZoneIngress, encode_yaml, to_document
from kuma.resources.model import AvailableService, ZoneIngressNetworking
from kuma.store import open_store

KEY = ResourceKey("ZoneIngress", "", "ingress")


def ingress(services: int, rev: int) -> ZoneIngress:
    """The list kuma-load's zones hold: one entry per service, four tags, one entry changed."""
    return ZoneIngress(
        name="ingress",
        zone="zone-2",
        networking=ZoneIngressNetworking(address="10.0.0.1", port=10001),
        available_services=tuple(
            AvailableService(
                tags={
                    "kuma.io/service": f"svc-{i}",
                    "kuma.io/protocol": "http",
                    "kuma.io/zone": "zone-2",
                    "rev": str(rev if i == 0 else 0),
                },
                instances=10,
                mesh="default",
            )
            for i in range(services)
        ),
    )


def seed(folder: str, services: int, as_json: bool) -> None:
    first = ingress(services, 0)
    data = orjson.dumps(to_document(first)) if as_json else encode_yaml([first]).encode()
    Path(folder, "ingress.json" if as_json else "ingress.yaml").write_bytes(data)


async def measure(services: int, writes: int, as_json: bool) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        seed(folder, services, as_json)
        async with open_store("directory", {"path": folder}) as store:
            stored = await store.get(KEY)
            walls, cpus = [], []
            for rev in range(1, writes + 1):
                changed = ingress(services, rev)
                wall, cpu = time.perf_counter(), time.process_time()
                stored = await store.update(changed, version=stored.meta.version)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--writes", type=int, default=20)
    args = parser.parse_args()
    print("services  format  wall ms  cpu ms (medians per update)")
    for services in args.services:
        for as_json in (False, True):
            wall, cpu = await measure(services, args.writes, as_json)
            name = "json" if as_json else "yaml"
            print(f"{services:8d}  {name:6s}  {wall:7.1f}  {cpu:6.1f}")


if __name__ == "__main__":
    anyio.run(main)
