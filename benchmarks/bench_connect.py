"""The transport floor of a sidecar's first contact: kuma-cp's CPU per new connection for the
transport alone (TLS handshake, HTTP/2 setup, one ADS stream, first request, first response,
ACK), with none of kuma-cp's own work (no token check, no engine, no stream bookkeeping).

The server is what kuma-cp runs on its dp port, minus the ADS handler: grpclib's server behind
the port demultiplexer and kuma-cp's own TLS layer (kuma/xds/server/demux.py, tls.py), the
certificate and ``SSLContext`` kuma-cp makes (kuma/cp/tls.py ``dp_server_context``: ECDSA P-256,
TLS 1.2+, ALPN h2 and http/1.1, one session ticket), and kuma-cp's garbage-collector thresholds.
Its handler does only what grpclib must for a stream: decode the first request
(``DeltaDiscoveryRequest`` with the 61 KB node Envoy 1.40 sends, kuma/load/envoy_node.py), send
one ``DeltaDiscoveryResponse`` of ``--response-bytes`` (default: the size of a sidecar's first
configuration in kuma-load, CDS + EDS + LDS bodies), and read the ACK; the stream then stays
open, as a sidecar's does, until the run ends. The clients (kuma-load's kind: grpclib, TLS
verifying the certificate, a real dataplane token as ``authorization`` metadata, RSA-signed as
kuma-cp's are) run in other processes, ``--concurrency`` connecting at a time per process.

Reported: the server's CPU time from the clients' start to the last ACK, per connection (the
server is idle while the clients start), and the wall time from the first ACK to the last.
kuma-cp's convergence CPU per proxy minus this is kuma-cp's own part.

Run: ``python benchmarks/bench_connect.py [--connections 2000] [--mode tls,plain] [--clients 2]
[--concurrency 32] [--response-bytes 14450] [--rounds 1]``; ``--mode tls,tls-stockhpack``
alternates kuma-cp's transport with hpack's own Huffman decoder, ``tls-tickets2`` with two
session tickets. With ``--pid-file`` the server
writes its pid there (to attach a profiler).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import ssl
import statistics
import time
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import hpack.hpack
import hpack.huffman_table
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest, DeltaDiscoveryResponse
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError

from kuma.cp.cli import GC_THRESHOLDS
from kuma.cp.tls import dp_server_context, use_small_tls_buffers
from kuma.load.envoy_node import envoy_node
from kuma.tls.certs import generate_ca_certificate
from kuma.tls.persisted import ServingCertificate
from kuma.tokens.claims import DataplaneIdentity, dataplane_claims, sign
from kuma.tokens.keys import DEFAULT_KID, new_signing_key
from kuma.xds.generate.types import CLUSTER
from kuma.xds.server.demux import SharedPortServer
from kuma.xds.server.listener import listening
from kuma.xds.server.service import (
    AggregatedDiscoveryServiceBase,
    AggregatedDiscoveryServiceStub,
    ServerStream,
)

#: kuma-load's first configuration per sidecar at 10,000 (converge traffic bytes / sidecars).
RESPONSE_BYTES = 14_450


def response_of(size: int) -> DeltaDiscoveryResponse:
    response = DeltaDiscoveryResponse(type_url=CLUSTER, nonce="1", system_version_info="1")
    resource = response.resources.add(name="all", version="1")
    resource.resource.type_url = CLUSTER
    resource.resource.value = b"x" * max(0, size - response.ByteSize() - 16)
    return response


class FloorService(AggregatedDiscoveryServiceBase):
    """What grpclib does for an ADS stream and nothing more: first request in, one response
    out, ACK in, then held open until the client goes."""

    def __init__(self, response: DeltaDiscoveryResponse) -> None:
        self._response = response
        self.acks = 0
        self.acked = asyncio.Event()

    async def StreamAggregatedResources(self, stream: ServerStream) -> None:
        raise NotImplementedError

    async def DeltaAggregatedResources(self, stream: ServerStream) -> None:
        if await stream.recv_message() is None:
            return
        await stream.send_message(self._response)
        if await stream.recv_message() is None:
            return
        self.acks += 1
        self.acked.set()
        while await stream.recv_message() is not None:
            pass


def _client_process(
    port: int, ca: bytes | None, count: int, concurrency: int, token: str, stop: EventType
) -> None:
    async def one(
        gate: asyncio.Semaphore, done: asyncio.Event, tls: ssl.SSLContext | None, index: int
    ) -> None:
        first = DeltaDiscoveryRequest(
            node=envoy_node(f"default.floor-{index}", "floor"), type_url=CLUSTER
        )
        await gate.acquire()
        released = False
        channel = Channel("127.0.0.1", port, ssl=tls)
        try:
            stub = AggregatedDiscoveryServiceStub(channel)
            async with stub.DeltaAggregatedResources.open(
                metadata={"authorization": token}
            ) as stream:
                await stream.send_message(first)
                response = await stream.recv_message()
                assert response is not None
                await stream.send_message(
                    DeltaDiscoveryRequest(type_url=CLUSTER, response_nonce=response.nonce)
                )
                gate.release()
                released = True
                await done.wait()
                await stream.cancel()
        except (GRPCError, StreamTerminatedError, ConnectionError):
            pass
        finally:
            if not released:
                gate.release()
            channel.close()

    async def run() -> None:
        tls = None
        if ca is not None:
            use_small_tls_buffers()
            tls = ssl.create_default_context(cadata=ca.decode())
            tls.set_alpn_protocols(["h2"])
        gate, done = asyncio.Semaphore(concurrency), asyncio.Event()

        async def until_stopped() -> None:
            await asyncio.to_thread(stop.wait)
            done.set()

        await asyncio.gather(until_stopped(), *(one(gate, done, tls, i) for i in range(count)))

    asyncio.run(run())


async def bench(
    connections: int,
    *,
    tls: bool,
    clients: int,
    concurrency: int,
    size: int,
    variants: frozenset[str] = frozenset(),
) -> tuple[float, float]:
    """Server CPU per connection (µs) and the wall time (s) from the first ACK to the last.
    ``variants``: ``stockhpack`` (hpack's own Huffman decoder), ``tickets2`` (OpenSSL's
    default of two session tickets), to compare with what kuma-cp runs."""
    ca: bytes | None = None
    context: ssl.SSLContext | None = None
    if tls:
        use_small_tls_buffers()
        ca, key = generate_ca_certificate(["127.0.0.1"])
        context = dp_server_context(ServingCertificate(ca, key, ca, "bench"))
        if "tickets2" in variants:
            context.num_tickets = 2
    token = sign(
        dataplane_claims(DataplaneIdentity(name="floor-0", mesh="default")),
        new_signing_key(),
        DEFAULT_KID,
        3600.0,
    )
    service = FloorService(response_of(size))
    server = SharedPortServer([service], asyncio.Protocol, tls=context)
    if "stockhpack" in variants:  # undo what the server installed (.huffman)
        hpack.hpack.decode_huffman = hpack.huffman_table.decode_huffman  # type: ignore[attr-defined]
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    async with listening(server, "127.0.0.1", 0, None, what="floor", encrypted=tls) as port:
        shares = [connections // clients + (i < connections % clients) for i in range(clients)]
        processes = [
            spawn.Process(target=_client_process, args=(port, ca, share, concurrency, token, stop))
            for share in shares
        ]
        cpu = time.process_time()
        for process in processes:
            process.start()
        wall = 0.0
        while service.acks < connections:
            service.acked.clear()
            await service.acked.wait()
            wall = wall or time.perf_counter()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        stop.set()
        for process in processes:
            await asyncio.to_thread(process.join, 30)
            if process.is_alive():
                process.terminate()
    return cpu / connections * 1e6, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument(
        "--mode",
        default="tls,plain",
        help="tls or plain, each optionally with -stockhpack and/or -tickets2 (comma-separated, "
        "run in this order each round)",
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=32, help="connecting at once, each")
    parser.add_argument("--response-bytes", type=int, default=RESPONSE_BYTES)
    parser.add_argument("--rounds", type=int, default=1, help="runs per mode, alternated")
    parser.add_argument("--pid-file", default="", help="write the server's pid here")
    args = parser.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)  # kuma-cp's collector settings (kuma/cp/cli.py)
    if args.pid_file:
        Path(args.pid_file).write_text(str(os.getpid()))
    modes = args.mode.split(",")
    request = DeltaDiscoveryRequest(node=envoy_node("default.floor-0", "floor"), type_url=CLUSTER)
    print(
        f"transport floor per new connection: first request {request.ByteSize()} bytes, "
        f"response {response_of(args.response_bytes).ByteSize()} bytes, "
        f"{args.connections} connections, load {os.getloadavg()[0]:.2f}"
    )
    results: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode in modes:
            kind, *variants = mode.split("-")
            options: dict[str, Any] = {
                "tls": kind == "tls",
                "variants": frozenset(variants),
                "clients": args.clients,
                "concurrency": args.concurrency,
                "size": args.response_bytes,
            }
            per, wall = asyncio.run(bench(args.connections, **options))
            results[mode].append(per)
            print(f"  {mode}: server CPU {per:.0f} µs per connection, wall {wall:.2f} s")
    if args.rounds > 1:
        for mode, values in results.items():
            print(f"  {mode} median: {statistics.median(values):.0f} µs per connection")


if __name__ == "__main__":
    main()
