"""kuma-cp's stream layer in a fan-out, above the transport floor: the real ADS server and
sessions, no engine.

``bench_transport_fanout.py`` measures the floor (a bare grpclib handler per stream sends a
pre-built response and reads the ACK). This serves the same clients (``--streams`` connections in
another process on the other core, every response ACKed) with kuma-cp's ``AdsServer`` on its
dp-port stack: each round changes one ~1 KB Cluster of every proxy and marks every proxy's watch,
as the engine does in a fan-out, so what is measured is the server's CPU per (stream, round) for
what kuma-cp adds between the engine's mark and the transport: the delta state machine, the
session's send (and its wake-up), the response's encoding, the ACK's decoding and accounting.
The observers are a counter of ACKs only, or with ``--observed`` kuma-cp's own beside it
(insights, metrics with the GUI's propagation log, the GUI's stream watcher, tallied per loop
turn as kuma/cp/runtime.py wires them).

Modes: ``step``: the watches behind a ``CompositeSource`` as in kuma-cp (a change to a parked
session is sent by its send step, kuma/xds/server/session.py); ``task``: the same watches
unwrapped, so every change wakes the session's send task. ``-tls`` after either: over TLS.

Run: ``python benchmarks/bench_session_fanout.py [--streams 2000] [--rounds 10] [--batches 3]
[--mode task,step] [--observed] [--client-work-us 0] [--client-processes 1]`` (the client
options: as in bench_transport_fanout).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from bench_transport_fanout import (
    BODY_BYTES,
    Clients,
    CpuPerStream,
    clients_of,
    cpu_line,
    fanout_arguments,
    stop_clients,
)
from envoy.config.cluster.v3.cluster_pb2 import Cluster

from kuma.cp.cli import GC_THRESHOLDS
from kuma.cp.tls import dp_server_context
from kuma.gui.feed import LiveFeed
from kuma.gui.propagation import PropagationLog
from kuma.gui.streams import StreamWatcher
from kuma.insights.tracker import InsightTracker
from kuma.metrics import Metrics
from kuma.tls.certs import generate_ca_certificate
from kuma.tls.persisted import ServingCertificate
from kuma.xds.composite import CompositeSource
from kuma.xds.generate.types import CLUSTER
from kuma.xds.proxy_metadata import ProxyMetadata
from kuma.xds.server import AdsServer
from kuma.xds.server.demux import SharedPortServer
from kuma.xds.server.listener import listening
from kuma.xds.server.observer import StreamObserver
from kuma.xds.server.tally import TalliedObserverGroup
from kuma.xds.snapshot import VersionedResource, versioned
from kuma.xds.source import Changes, ProxyWatch
from kuma.xds.wakeup import Waitable

_NAME = "backend"


def _cluster(version: int) -> VersionedResource:
    cluster = Cluster(name=_NAME)
    cluster.alt_stat_name = str(version % 251) * (BODY_BYTES // 3)
    return versioned(CLUSTER, _NAME, cluster)


class _Watch(Waitable):
    __slots__ = ("_changes", "_node_id", "_since", "_source")

    def __init__(self, source: _Source, node_id: str) -> None:
        super().__init__()
        self._source = source
        self._node_id = node_id
        self._changes: dict[str, set[str]] = {}
        self._since: float | None = None

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def known(self) -> bool:
        return True

    @property
    def has_changes(self) -> bool:
        return bool(self._changes)

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        return self._source.current if type_url == CLUSTER else {}

    def take_changes(self) -> Changes:
        # As the engine's: the names, and when the change reached the control plane (the
        # propagation the observers measure).
        taken = Changes(self._changes, since=self._since)
        self._changes, self._since = {}, None
        return taken

    def mark(self, since: float) -> None:
        self._changes.setdefault(CLUSTER, set()).add(_NAME)
        if self._since is None:
            self._since = since
        self._changed()


class _Source:
    """Every proxy holds the same one Cluster; :meth:`change` replaces it and marks them all."""

    def __init__(self) -> None:
        self.current = {_NAME: _cluster(0)}
        self.watches: list[_Watch] = []

    @contextlib.asynccontextmanager
    async def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> AsyncIterator[ProxyWatch]:
        watch = _Watch(self, node_id)
        self.watches.append(watch)
        try:
            yield watch
        finally:
            self.watches.remove(watch)

    def change(self, version: int) -> None:
        self.current = {_NAME: _cluster(version)}
        since = time.monotonic()
        for watch in self.watches:
            watch.mark(since)


class _Acks:
    """The one observer: counts ACKs, and says when every stream has acknowledged a round."""

    def __init__(self, streams: int) -> None:
        self.streams = streams
        self.acks = 0
        self.target = streams
        self.reached = asyncio.Event()

    def on_stream_open(self, stream_id: int, node_id: str, protocol: str, version: str) -> None:
        pass

    def on_response(self, node_id: str, type_url: str, resource_count: int, nonce: str) -> None:
        pass

    def on_ack(self, node_id: str, type_url: str, nonce: str) -> None:
        self.acks += 1
        if self.acks >= self.target:
            self.reached.set()

    def on_nack(self, node_id: str, type_url: str, nonce: str, message: str) -> None:
        raise AssertionError(f"NACK from {node_id}: {message}")

    def on_stream_close(self, stream_id: int, node_id: str) -> None:
        pass

    async def wait_for(self, acks: int) -> None:
        self.target = acks
        if self.acks < acks:
            self.reached.clear()
            await self.reached.wait()


def _observers(acks: _Acks) -> StreamObserver:
    """kuma-cp's stream observers (kuma/cp/runtime.py) with ``acks`` beside them."""
    metrics = Metrics()
    feed = LiveFeed()
    metrics.on_propagation = PropagationLog(feed).on_propagation
    return TalliedObserverGroup([InsightTracker("bench"), metrics, StreamWatcher(feed), acks])


async def bench(
    clients: Clients, rounds: int, batches: int, *, mode: str, observed: bool = False
) -> tuple[float, float, float]:
    """Server CPU, client CPU and wall time per stream and round, µs, medians of ``batches``."""
    os.sched_setaffinity(0, {0})
    streams = clients.streams
    source = _Source()
    acks = _Acks(streams)
    observer: StreamObserver = _observers(acks) if observed else acks
    served: Any = CompositeSource(source, {}) if mode.startswith("step") else source
    ca: bytes | None = None
    context = None
    if mode.endswith("-tls"):
        ca, key = generate_ca_certificate(["127.0.0.1"])
        context = dp_server_context(ServingCertificate(ca, key, ca, "bench"))
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        server = SharedPortServer([AdsServer(served, observer)], asyncio.Protocol, tls=context)
        async with listening(
            server, "127.0.0.1", 0, None, what="bench", encrypted=context is not None
        ) as port:
            started = clients.start(port, ca)
            cpu = CpuPerStream(started, rounds * streams)
            await acks.wait_for(streams)  # every stream's first response acknowledged
            version = 0
            for _ in range(batches):
                cpu.start()
                for _ in range(rounds):
                    version += 1
                    source.change(version)
                    await acks.wait_for(acks.acks + streams)
                cpu.stop()
        await stop_clients(started)
    finally:
        gc.set_threshold(*thresholds)
    return cpu.medians_us()


def main() -> None:
    parser = fanout_arguments(__doc__, 2000, "task,step")
    parser.add_argument("--observed", action="store_true", help="with kuma-cp's observers")
    args = parser.parse_args()
    clients = clients_of(args)
    print(f"kuma-cp's stream layer in a fan-out: {args.streams} streams, one ~1 KB Cluster each")
    print(f"  {clients.describe()}")
    for mode in args.mode.split(","):
        measured = asyncio.run(
            bench(clients, args.rounds, args.batches, mode=mode, observed=args.observed)
        )
        print(f"  {mode}: {cpu_line(measured)}")


if __name__ == "__main__":
    main()
