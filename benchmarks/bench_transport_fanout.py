"""The transport's floor for a fan-out: raw grpclib (alone or on kuma-cp's dp-port stack), no
kuma-cp code above the transport.

kuma-cp's fan-out (one change reaching every connected proxy) costs one delta response and one
ACK per proxy, each on its own HTTP/2 connection. This measures what exactly that costs the
server when nothing of ours runs: a bare grpclib handler per stream (the shape every grpclib
server has: one task per stream) waits for a round, sends one pre-built
``DeltaDiscoveryResponse`` of about the size kuma-cp sends in a fan-out (one ~1 KB resource) and
reads the client's ACK. The clients, ``--streams`` of them each with its own connection, run in
another process on the other core and ACK every response (bench_server's ``ack_responses``).

Printed: the server's CPU per (stream, round), median of ``--batches``, for plain TCP and for TLS
(the server's certificate a P-256 one, as kuma-cp's dp server generates it). kuma-cp's own CPU
per affected proxy in the kuma-load fan-out, measured in the same sitting, compares with this
number (benchmarks/RESULTS.md, issue 15).

Modes: ``tcp`` and ``tls`` serve with grpclib's own ``Server`` (TLS by asyncio's ``sslproto``);
``kuma-tcp`` and ``kuma-tls`` with the stack kuma-cp runs on its dp port (its TLS layer, the port
demultiplexer, its ``SSLContext`` and garbage-collector thresholds: kuma/xds/server/demux.py,
tls.py, kuma/cp/tls.py), so that the floor is the one under kuma-cp's own fan-out.

``--client-work-us N``: each client spends N µs of busy CPU on each response before its ACK (a
slower client fleet): the ACKs come back paced and each costs the server more. The clients' CPU
and the wall time per (stream, round) are printed too, so that a floor can be matched to the
pace of the run it is compared with (kuma-load's simulated Envoys go at about the pace of
``--client-work-us 0``: benchmarks/RESULTS.md, issue 15).

``--client-processes N`` spreads the clients over N processes, all on the other core (kuma-load's
simulated Envoys are two worker processes).

``--stream-heap-kb N`` / ``--stream-touch-kb M``: each stream's handler holds N KB of small
objects from its start and reads M KB of them before each response (:class:`StreamHeap`): the
transport's objects then lie between per-proxy state as kuma-cp's do, and a walk over that
state comes between two sends, to see whether that layout slows the transport's own code
(benchmarks/RESULTS.md: it does not measurably).

Run: ``python benchmarks/bench_transport_fanout.py [--streams 1000] [--rounds 10] [--batches 3]
[--mode tcp,tls,kuma-tcp,kuma-tls] [--client-work-us 0] [--client-processes 1]
[--stream-heap-kb 0] [--stream-touch-kb 0]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import multiprocessing
import os
import socket
import ssl
import statistics
import time
from collections.abc import AsyncIterator, Iterable, Sized
from multiprocessing.process import BaseProcess

import psutil
from bench_server import ack_responses
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
)
from grpclib.client import Channel
from grpclib.const import Cardinality, Handler
from grpclib.server import Server, Stream

from kuma.cp.cli import GC_THRESHOLDS
from kuma.cp.tls import dp_server_context
from kuma.tls.certs import generate_ca_certificate
from kuma.tls.persisted import ServingCertificate
from kuma.xds.generate.types import CLUSTER
from kuma.xds.server.demux import SharedPortServer
from kuma.xds.server.listener import listening
from kuma.xds.server.service import DELTA_METHOD

#: About what one resource of kuma-cp's fan-out weighs on the wire (10.4 MB / 10,001 responses).
BODY_BYTES = 950


def _response(version: int) -> DeltaDiscoveryResponse:
    response = DeltaDiscoveryResponse(type_url=CLUSTER, nonce=str(version))
    resource = response.resources.add(name="backend", version=str(version))
    resource.resource.type_url = CLUSTER
    resource.resource.value = bytes([version % 251]) * BODY_BYTES
    return response


@dataclasses.dataclass(frozen=True)
class StreamHeap:
    """Objects each stream's handler allocates when its stream opens and keeps for the
    stream's life (``kb``), of which it reads ``touch_kb`` before each response: kuma-cp holds
    such per-proxy state (its sessions, watches, subscriptions, the engine's records),
    allocated as each proxy connects between the transport's own objects, and its fan-out
    reads part of it between one proxy's send and the next. Small dicts, tuples and strings,
    the kinds kuma-cp's per-proxy state is made of (about 100 bytes each)."""

    kb: int = 0
    touch_kb: int = 0

    def allocate(self) -> list[Sized]:
        held: list[Sized] = []
        for index in range(self.kb * 1024 // 250):  # ~250 bytes per pair
            name = f"resource-{index}-{id(held)}"
            held.append({"name": name, "version": index})
            held.append((name, index, None))
        return held

    def touch(self, held: list[Sized]) -> int:
        """Read the first ``touch_kb`` of the objects (their lengths), as a walk over state."""
        total = 0
        for item in held[: self.touch_kb * 1024 // 125]:
            total += len(item)
        return total


class _Rounds:
    """Every stream's handler waits here for the next round and counts the ACKs it reads."""

    def __init__(self, streams: int, heap: StreamHeap | None = None) -> None:
        self.streams = streams
        self.heap = heap or StreamHeap()
        self.round = 0
        self.opened = 0
        self.acks = 0
        #: Resolved when the next round starts: one wake-up per stream, as a change set's.
        self.started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.acked = asyncio.Event()

    async def handle(self, stream: Stream[DeltaDiscoveryRequest, DeltaDiscoveryResponse]) -> None:
        if await stream.recv_message() is None:
            return
        held = self.heap.allocate()
        self.opened += 1
        if self.opened == self.streams:
            self.acked.set()
        while True:
            started = await self.started
            self.heap.touch(held)
            await stream.send_message(_RESPONSES[started % 2])
            if await stream.recv_message() is None:
                return
            self.acks += 1
            if self.acks % self.streams == 0:
                self.acked.set()

    def __mapping__(self) -> dict[str, Handler]:
        return {
            DELTA_METHOD: Handler(
                self.handle,
                Cardinality.STREAM_STREAM,
                DeltaDiscoveryRequest,
                DeltaDiscoveryResponse,
            )
        }

    async def next_round(self) -> None:
        self.acked.clear()
        self.round += 1
        started, self.started = self.started, asyncio.get_running_loop().create_future()
        started.set_result(self.round)
        await self.acked.wait()


_RESPONSES = (_response(1), _response(2))


def _clients(port: int, first: int, streams: int, ca: bytes | None, work_us: float) -> None:
    """A client process: ``streams`` connections (numbered from ``first``), one stream each,
    every response ACKed (after ``work_us`` of busy CPU per response: ``--client-work-us``)."""
    os.sched_setaffinity(0, {1})

    async def one(index: int) -> None:
        tls = None
        if ca is not None:
            tls = ssl.create_default_context(cadata=ca.decode())
            tls.set_alpn_protocols(["h2"])
        first = DeltaDiscoveryRequest(type_url=CLUSTER)
        first.node.id = f"default.bench-{index}"
        async with Channel("127.0.0.1", port, ssl=tls) as channel:
            await ack_responses(channel, first, work_seconds=work_us / 1e6)

    async def run() -> None:
        tasks = []
        for index in range(first, first + streams):
            tasks.append(asyncio.create_task(one(index)))
            if index % 50 == 49:
                await asyncio.sleep(0.01)  # do not overrun the listen backlog
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())


@contextlib.asynccontextmanager
async def _serving(rounds_state: _Rounds, mode: str) -> AsyncIterator[tuple[int, bytes | None]]:
    """The server of ``mode`` listening on a free port: yields the port and the CA (TLS)."""
    kind = mode.removeprefix("kuma-")
    ca: bytes | None = None
    certificate: ServingCertificate | None = None
    if kind == "tls":
        ca, key = generate_ca_certificate(["127.0.0.1"])
        certificate = ServingCertificate(ca, key, ca, "bench")
    if mode.startswith("kuma-"):
        # kuma-cp's collector settings for this mode only: the modes share one process, and a
        # stock mode run after this one must not be measured with them.
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            context = dp_server_context(certificate) if certificate is not None else None
            server: Server = SharedPortServer([rounds_state], asyncio.Protocol, tls=context)
            encrypted = context is not None
            async with listening(
                server, "127.0.0.1", 0, None, what="floor", encrypted=encrypted
            ) as port:
                yield port, ca
        finally:
            gc.set_threshold(*thresholds)
        return
    server = Server([rounds_state])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stock = certificate.server_context() if certificate is not None else None
    await server.start(sock=listener, ssl=stock, backlog=4096)
    try:
        yield port, ca
    finally:
        server.close()
        await server.wait_closed()


class CpuPerStream:
    """The server's and the client processes' CPU per (stream, round), and the wall-clock time
    per (stream, round) (the pace the responses and ACKs went at), one sample per batch."""

    def __init__(self, clients: Iterable[BaseProcess], per_batch: int) -> None:
        self._clients = [psutil.Process(_pid(client)) for client in clients]
        self._per_batch = per_batch
        self.server: list[float] = []
        self.client: list[float] = []
        self.wall: list[float] = []
        self._start = (0.0, 0.0, 0.0)

    def _now(self) -> tuple[float, float, float]:
        client = 0.0
        for process in self._clients:
            times = process.cpu_times()
            client += times.user + times.system
        return time.process_time(), client, time.perf_counter()

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> None:
        now = self._now()
        for samples, end, start in zip(
            (self.server, self.client, self.wall), now, self._start, strict=True
        ):
            samples.append((end - start) / self._per_batch)

    def medians_us(self) -> tuple[float, float, float]:
        """Medians over the batches: (server CPU, client CPU, wall), µs per stream and round."""
        server, client, wall = (
            statistics.median(samples) * 1e6 for samples in (self.server, self.client, self.wall)
        )
        return server, client, wall


def _pid(process: BaseProcess) -> int:
    """A started process's id (``psutil.Process(None)`` would be this process)."""
    if process.pid is None:
        raise RuntimeError("the client process was not started")
    return process.pid


def cpu_line(measured: tuple[float, float, float]) -> str:
    """:meth:`CpuPerStream.medians_us` as a line of the benchmarks' output."""
    server, client, wall = measured
    return (
        f"server CPU {server:.1f} µs per stream and round (clients {client:.0f} µs,"
        f" wall {wall:.0f} µs)"
    )


@dataclasses.dataclass(frozen=True)
class Clients:
    """The benchmark's clients: ``streams`` connections in ``processes`` processes (all on the
    other core), each spending ``work_us`` of busy CPU per response before its ACK."""

    streams: int
    work_us: float = 0.0
    processes: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.processes <= self.streams:
            raise ValueError(
                f"--client-processes must be between 1 and --streams ({self.streams}),"
                f" got {self.processes}"
            )

    def start(self, port: int, ca: bytes | None) -> list[BaseProcess]:
        spawn = multiprocessing.get_context("spawn")
        started: list[BaseProcess] = []
        share = -(-self.streams // self.processes)
        for first in range(0, self.streams, share):
            count = min(share, self.streams - first)
            process = spawn.Process(target=_clients, args=(port, first, count, ca, self.work_us))
            process.start()
            started.append(process)
        return started

    def describe(self) -> str:
        return f"{self.processes} client process(es), {self.work_us:g} µs busy per response"


async def bench(
    clients: Clients, rounds: int, batches: int, *, mode: str, heap: StreamHeap | None = None
) -> tuple[float, float, float]:
    """Server CPU, client CPU and wall time per stream and round, µs, medians of ``batches``."""
    os.sched_setaffinity(0, {0})
    streams = clients.streams
    rounds_state = _Rounds(streams, heap)
    async with _serving(rounds_state, mode) as (port, ca):
        started = clients.start(port, ca)
        cpu = CpuPerStream(started, rounds * streams)
        await rounds_state.acked.wait()  # every stream opened
        await rounds_state.next_round()  # warm-up: every connection's first response
        for _ in range(batches):
            cpu.start()
            for _ in range(rounds):
                await rounds_state.next_round()
            cpu.stop()
    await stop_clients(started)
    return cpu.medians_us()


async def stop_clients(clients: list[BaseProcess]) -> None:
    """Once the server closed its connections: the client processes end (or are ended)."""
    for client in clients:
        await asyncio.to_thread(client.join, 10)
        if client.is_alive():
            client.terminate()
            await asyncio.to_thread(client.join, 5)
    # Let the server see its connections lost before the loop ends (kuma-cp's demux ends each
    # lost connection's handler in a task of its own).
    await asyncio.sleep(0.5)


def fanout_arguments(doc: str | None, streams: int, mode: str) -> argparse.ArgumentParser:
    """The fan-out benchmarks' common options (``doc``: the benchmark's module docstring)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--streams", type=int, default=streams)
    parser.add_argument("--rounds", type=int, default=10, help="fan-outs per batch")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--mode", default=mode)
    parser.add_argument(
        "--client-work-us",
        type=float,
        default=0.0,
        help="busy CPU (µs) each client spends per response before its ACK: a slower client fleet",
    )
    parser.add_argument(
        "--client-processes",
        type=int,
        default=1,
        help="processes the clients are spread over, all on the other core (kuma-load: 2)",
    )
    return parser


def clients_of(args: argparse.Namespace) -> Clients:
    """The clients ``fanout_arguments``' options describe."""
    return Clients(args.streams, args.client_work_us, args.client_processes)


def main() -> None:
    parser = fanout_arguments(__doc__, 1000, "tcp,tls,kuma-tcp,kuma-tls")
    parser.add_argument(
        "--stream-heap-kb",
        type=int,
        default=0,
        help="KB of small objects each stream's handler holds from its start (per-proxy state)",
    )
    parser.add_argument(
        "--stream-touch-kb",
        type=int,
        default=0,
        help="KB of those each handler reads before each response",
    )
    args = parser.parse_args()
    heap = StreamHeap(args.stream_heap_kb, args.stream_touch_kb)
    size = len(_RESPONSES[0].SerializeToString())
    clients = clients_of(args)
    print(f"raw grpclib fan-out: {args.streams} streams, a {size}-byte response + ACK each")
    print(f"  {clients.describe()}")
    for mode in args.mode.split(","):
        measured = asyncio.run(bench(clients, args.rounds, args.batches, mode=mode, heap=heap))
        print(f"  {mode}: {cpu_line(measured)}")


if __name__ == "__main__":
    main()
