"""Decode + validate one Dataplane (1 inbound, 5 outbounds), from JSON and from YAML.

Run: ``python benchmarks/bench_resources.py [runs]``. Prints medians in microseconds
(target: <= 50 us per Dataplane, so 10,000 in <= 0.5 s) and the time for 10,000 distinct ones.
"""

from __future__ import annotations

import statistics
import sys
import time

import orjson

from kuma.resources import check, decode_one, encode_yaml


def document(index: int) -> dict[str, object]:
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": f"web-{index}",
        "networking": {
            "address": f"10.{index // 65536}.{index // 256 % 256}.{index % 256}",
            "inbound": [
                {
                    "port": 10000,
                    "servicePort": 8080,
                    "tags": {"kuma.io/service": "web", "kuma.io/protocol": "http", "v": "1"},
                }
            ],
            "outbound": [
                {"port": 20000 + i, "tags": {"kuma.io/service": f"svc-{i}"}} for i in range(5)
            ],
        },
    }


def median_us(payload: bytes | str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        check(decode_one(payload))
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    as_json = orjson.dumps(document(1))
    as_yaml = encode_yaml([decode_one(as_json)])
    print(f"decode+validate JSON: {median_us(as_json, runs):6.1f} us (median of {runs})")
    yaml_runs = runs // 10
    print(f"decode+validate YAML: {median_us(as_yaml, yaml_runs):6.1f} us (median of {yaml_runs})")
    payloads = [orjson.dumps(document(i)) for i in range(10_000)]
    started = time.perf_counter()
    for payload in payloads:
        check(decode_one(payload))
    print(f"10,000 distinct Dataplanes from JSON: {time.perf_counter() - started:.3f} s")


if __name__ == "__main__":
    main()
