"""Time from-scratch generation of one proxy plus serialization of every resource.

A proxy with 1 inbound and 5 outbounds (http, http2, grpc, tcp, kafka services, two endpoints
each). Run: ``python benchmarks/bench_generate.py [runs]``; prints the median in microseconds
(target: <= 200 us).
"""

from __future__ import annotations

import statistics
import sys
import time

from kuma.resources.model import Dataplane, Inbound, Networking, Outbound
from kuma.xds.generate import StaticMeshView, generate_proxy

SERVICES = {"web": "http", "api": "http2", "rpc": "grpc", "db": "tcp", "queue": "kafka"}


def _mesh() -> tuple[Dataplane, StaticMeshView]:
    others = [
        Dataplane(
            name=f"{service}-{i}",
            networking=Networking(
                address=f"10.0.{n}.{i + 1}",
                inbound=(
                    Inbound(
                        port=8080,
                        tags={
                            "kuma.io/service": service,
                            "kuma.io/protocol": protocol,
                            "version": f"v{i}",
                        },
                    ),
                ),
            ),
        )
        for n, (service, protocol) in enumerate(SERVICES.items())
        for i in range(2)
    ]
    proxy = Dataplane(
        name="client-0",
        networking=Networking(
            address="10.1.0.1",
            inbound=(
                Inbound(
                    port=8080,
                    service_port=80,
                    tags={"kuma.io/service": "client", "kuma.io/protocol": "http"},
                ),
            ),
            outbound=tuple(
                Outbound(port=10001 + n, tags={"kuma.io/service": service})
                for n, service in enumerate(SERVICES)
            ),
        ),
    )
    return proxy, StaticMeshView([proxy, *others])


def _once(proxy: Dataplane, view: StaticMeshView) -> int:
    size = 0
    for by_name in generate_proxy(proxy, view, 9901).values():
        for message in by_name.values():
            size += len(message.SerializeToString(deterministic=True))
    return size


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    proxy, view = _mesh()
    for _ in range(200):
        _once(proxy, view)
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        _once(proxy, view)
        samples.append(time.perf_counter_ns() - start)
    counts = {t.rsplit(".", 1)[-1]: len(v) for t, v in generate_proxy(proxy, view, 9901).items()}
    print(f"resources: {counts}, bytes: {_once(proxy, view)}")
    print(
        f"generate_proxy + serialize, 1 inbound + 5 outbounds: "
        f"median {statistics.median(samples) / 1000:.1f} us, "
        f"p90 {statistics.quantiles(samples, n=10)[-1] / 1000:.1f} us over {runs} runs"
    )


if __name__ == "__main__":
    main()
