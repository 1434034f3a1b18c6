"""Cost of one delta push and its ACK on one ADS stream.

One proxy subscribes to one ClusterLoadAssignment (10 endpoints, 223 bytes); each round the
source flips it between two pre-serialized versions, the server pushes a one-resource delta
response and the client ACKs it; the next round starts when the server has seen the ACK.

* memory: grpclib's in-memory channel, client and server in this process: wall time per
  round (median of rounds) covers both sides.
* tcp: the server here on loopback, the client in another process: the server's own CPU time
  per round (this process's CPU time / rounds, median of batches) and the wall time per round.
* tls: the same over TLS (kuma-cp's default: asyncio's SSL protocol on the server, the
  client verifying a generated certificate), to see what TLS adds per push + ACK.

Run: ``python benchmarks/bench_server.py [--rounds 2000] [--batches 5] [--mode memory,tcp,tls]
[--shared-port]`` (``--shared-port``: the port shared as in kuma-cp, so TLS is kuma-cp's own layer
behind the demultiplexer rather than asyncio's).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import ssl
import statistics
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial

import anyio
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.testing import ChannelFor

from kuma.tls.certs import generate_ca_certificate
from kuma.tls.persisted import ServingCertificate
from kuma.xds.generate.types import ENDPOINT
from kuma.xds.proxy_metadata import ProxyMetadata
from kuma.xds.server import AdsServer, AggregatedDiscoveryServiceStub, NoopObserver, serve
from kuma.xds.server.observer import Flavour
from kuma.xds.snapshot import VersionedResource, versioned

NODE = "default.bench"
NAME = "backend"


def assignment(port: int) -> VersionedResource:
    cla = ClusterLoadAssignment(cluster_name=NAME)
    lb_endpoints = cla.endpoints.add().lb_endpoints
    for i in range(10):
        address = lb_endpoints.add().endpoint.address.socket_address
        address.address, address.port_value = f"10.0.0.{i + 1}", port
    return versioned(ENDPOINT, NAME, cla)


class _Watch:
    def __init__(self) -> None:
        self.current = assignment(8080)
        self.changed = False
        self.poked = False
        self.event = asyncio.Event()

    node_id = NODE
    known = True

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        return {NAME: self.current} if type_url == ENDPOINT else {}

    def take_changes(self) -> dict[str, set[str]]:
        if not self.changed:
            return {}
        self.changed = False
        return {ENDPOINT: {NAME}}

    async def wait_for_changes(self) -> None:
        while not (self.changed or self.poked):
            self.event.clear()
            await self.event.wait()
        self.poked = False

    def poke(self) -> None:
        self.poked = True
        self.event.set()

    def push(self, item: VersionedResource) -> None:
        self.current = item
        self.changed = True
        self.event.set()


class _Source:
    """One proxy, one resource: the smallest ConfigSource (its own cost stays negligible)."""

    def __init__(self) -> None:
        self.watch = _Watch()

    @asynccontextmanager
    async def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> AsyncIterator[_Watch]:
        yield self.watch


class _AckCounter(NoopObserver):
    def __init__(self) -> None:
        self.acks = 0
        self.event = asyncio.Event()
        self.opened = asyncio.Event()

    def on_stream_open(
        self, stream_id: int, node_id: str, protocol: Flavour, envoy_version: str
    ) -> None:
        self.opened.set()

    def on_ack(self, node_id: str, type_url: str, nonce: str) -> None:
        self.acks += 1
        self.event.set()


async def _drive(source: _Source, acks: _AckCounter, rounds: int) -> list[float]:
    """Push ``rounds`` changes, each after the previous ACK; the wall time of each round."""
    versions = [assignment(9090), assignment(8080)]
    times = []
    for i in range(rounds):
        start = time.perf_counter()
        target = acks.acks + 1
        source.watch.push(versions[i % 2])
        while acks.acks < target:
            acks.event.clear()
            await acks.event.wait()
        times.append(time.perf_counter() - start)
    return times


async def ack_responses(
    channel: Channel, first: DeltaDiscoveryRequest, *, work_seconds: float = 0.0
) -> None:
    """Open a delta ADS stream with ``first`` and ACK every response (of ``first``'s type)
    until the server side ends the run (the client never ends it: a reset right after the
    last ACK could overtake it, and the run would wait forever). bench_transport_fanout's
    clients are these too.

    ``work_seconds``: CPU the client spends on each response before its ACK (a busy wait), as
    a slower client would: how soon ACKs come back changes what the server spends on each."""
    stub = AggregatedDiscoveryServiceStub(channel)
    try:
        async with stub.DeltaAggregatedResources.open() as stream:
            await stream.send_message(first)
            while (response := await stream.recv_message()) is not None:
                if work_seconds:
                    busy_until = time.perf_counter() + work_seconds
                    while time.perf_counter() < busy_until:
                        pass
                ack = DeltaDiscoveryRequest(type_url=first.type_url, response_nonce=response.nonce)
                await stream.send_message(ack)
    except (GRPCError, StreamTerminatedError, ConnectionError):
        pass  # the server went away: the run is over


async def _client(channel: Channel) -> None:
    first = DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_subscribe=[NAME])
    first.node.id = NODE
    await ack_responses(channel, first)


async def bench_memory(rounds: int, batches: int) -> float:
    source, acks = _Source(), _AckCounter()
    total = rounds * batches
    async with ChannelFor([AdsServer(source, acks)]) as channel, anyio.create_task_group() as tg:
        tg.start_soon(_client, channel)
        while acks.acks < 1:  # the initial response, ACKed
            acks.event.clear()
            await acks.event.wait()
        times = await _drive(source, acks, total)
        tg.cancel_scope.cancel()
    return statistics.median(times) * 1e6


def _client_process(port: int, ca: bytes | None) -> None:
    async def run() -> None:
        tls = None
        if ca is not None:
            tls = ssl.create_default_context(cadata=ca.decode())
            tls.set_alpn_protocols(["h2"])
        async with Channel("127.0.0.1", port, ssl=tls) as channel:
            await _client(channel)

    asyncio.run(run())


async def bench_tcp(
    rounds: int, batches: int, *, tls: bool = False, shared_port: bool = False
) -> tuple[float, float]:
    source, acks = _Source(), _AckCounter()
    ca: bytes | None = None
    server_tls: ssl.SSLContext | None = None
    if tls:
        ca, key = generate_ca_certificate(["127.0.0.1"])
        server_tls = ServingCertificate(ca, key, ca, "bench").server_context()
    async with anyio.create_task_group() as tg:
        # With a plain-HTTP protocol the port is shared as in kuma-cp: TLS is then kuma-cp's
        # own layer (kuma/xds/server/tls.py) behind the demultiplexer, not asyncio's.
        http1 = asyncio.Protocol if shared_port else None
        serving = partial(serve, ssl=server_tls, http1=http1)
        port = await tg.start(serving, source, "127.0.0.1", 0, acks)
        context = multiprocessing.get_context("spawn")
        client = context.Process(target=_client_process, args=(port, ca))
        client.start()
        while acks.acks < 1:
            acks.event.clear()
            await acks.event.wait()
        cpu, wall = [], []
        for _ in range(batches):
            cpu_start = time.process_time()
            wall += await _drive(source, acks, rounds)
            cpu.append((time.process_time() - cpu_start) / rounds)
        tg.cancel_scope.cancel()
    await anyio.to_thread.run_sync(client.join, 5)
    if client.is_alive():  # its connection outlived the server (TLS): the run is over anyway
        client.terminate()
        await anyio.to_thread.run_sync(client.join, 5)
    return statistics.median(cpu) * 1e6, statistics.median(wall) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="rounds per batch")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--mode", default="memory,tcp")
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="run the server on uvloop (pip install uvloop; not a dependency: a measurement)",
    )
    parser.add_argument(
        "--shared-port",
        action="store_true",
        help="share the port with a plain-HTTP protocol as kuma-cp does: its own TLS layer and "
        "the demultiplexer (default: asyncio's TLS, no demultiplexer)",
    )
    args = parser.parse_args()
    modes = args.mode.split(",")
    body = len(assignment(8080).body)
    print(f"delta push + ACK of one ClusterLoadAssignment ({body} bytes), one stream")
    if "memory" in modes:
        median = anyio.run(bench_memory, args.rounds, args.batches)
        print(f"  in-memory channel, client and server in one process: {median:.0f} µs per round")
    options = {"use_uvloop": True} if args.uvloop else {}
    if "tcp" in modes:
        cpu, wall = anyio.run(
            partial(bench_tcp, args.rounds, args.batches, shared_port=args.shared_port),
            backend_options=options,
        )
        print(f"  loopback TCP, client in another process: server CPU {cpu:.0f} µs per round,")
        print(f"    wall {wall:.0f} µs per round")
    if "tls" in modes:
        cpu, wall = anyio.run(
            partial(bench_tcp, args.rounds, args.batches, tls=True, shared_port=args.shared_port),
            backend_options=options,
        )
        print(f"  loopback TLS, client in another process: server CPU {cpu:.0f} µs per round,")
        print(f"    wall {wall:.0f} µs per round")


if __name__ == "__main__":
    main()
