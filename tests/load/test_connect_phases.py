"""kuma.load.connect_phases: each sidecar's connection phases are recorded in order, and the
worker's connect gate keeps at most its bound of sidecars between connect and first response."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryResponse
from grpclib.server import Server

from kuma.load.connect_phases import DROP, MARKS, READ, TCP, CpuSampler, summarize_marks
from kuma.load.shared import Shared
from kuma.load.sidecar import Sidecar
from kuma.load.wire import CDS, TYPES
from kuma.xds.server.service import AggregatedDiscoveryServiceBase

pytestmark = pytest.mark.anyio

SIDECARS = 4


class FirstAnswers(AggregatedDiscoveryServiceBase):
    """Answers each stream's first request with an empty CDS response; notes, as each first
    request arrives, how many sidecars are mid-setup (connected, no response read yet)."""

    def __init__(self, sidecars: list[Sidecar]) -> None:
        self.sidecars = sidecars
        self.mid_setup: list[int] = []
        self.read = 0
        #: Set once every sidecar sent a request after its first response (it was read).
        self.all_read = asyncio.Event()

    async def StreamAggregatedResources(self, stream: Any) -> None:
        raise NotImplementedError

    async def DeltaAggregatedResources(self, stream: Any) -> None:
        await stream.recv_message()
        self.mid_setup.append(sum(1 for s in self.sidecars if s.marks[TCP] and not s.marks[READ]))
        await stream.send_message(DeltaDiscoveryResponse(type_url=TYPES[CDS], nonce="1"))
        await stream.recv_message()
        self.read += 1
        if self.read == len(self.sidecars):
            self.all_read.set()
        async for _ in stream:
            pass


async def _set_up(bound: int) -> tuple[FirstAnswers, list[Sidecar]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(SIDECARS)
    shared = Shared("127.0.0.1", listener.getsockname()[1], seed=1)
    shared.node_style = "minimal"
    if bound:
        shared.connect_gate = asyncio.Semaphore(bound)
    sidecars = [Sidecar(shared, i, f"default.s-{i}") for i in range(SIDECARS)]
    handler = FirstAnswers(sidecars)
    server = Server([handler])
    await server.start(sock=listener)
    tasks = [asyncio.get_running_loop().create_task(s.run()) for s in sidecars]
    try:
        await asyncio.wait_for(handler.all_read.wait(), 20)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.close()
        await server.wait_closed()
    return handler, sidecars


async def test_a_gate_of_one_lets_one_sidecar_set_up_at_a_time() -> None:
    handler, sidecars = await _set_up(bound=1)
    assert handler.mid_setup == [1] * SIDECARS
    # Every place given back: a reconnect storm after this one is not held up.
    gate = sidecars[0].shared.connect_gate
    assert gate is not None
    assert not gate.locked()
    assert not any(s.gated for s in sidecars)


async def test_without_a_gate_sidecars_set_up_together_and_phases_are_in_order() -> None:
    handler, sidecars = await _set_up(bound=0)
    # All set up at once on one loop (what the gate is for).
    assert max(handler.mid_setup) > 1
    for sidecar in sidecars:
        marks = sidecar.marks
        assert all(marks), marks
        assert marks == sorted(marks), marks


def test_phases_are_summarized_from_the_drop_and_between_steps() -> None:
    # drop, tcp, tls, sent, read
    marks = [
        [10.0, 10.5, 11.0, 11.0, 11.25],
        [10.0, 10.5, 13.0, 13.0, 14.0],
        [10.0, 10.5, 0.0, 0.0, 0.0],  # still in its handshake
        [0.0, 0.0, 0.0, 0.0, 0.0],  # not dropped (never started)
    ]
    report = summarize_marks(marks, first=1)
    assert report["since_drop"]["tcp"]["count"] == 3
    assert report["since_drop"]["read"]["first"] == 1.25
    assert report["since_drop"]["read"]["max"] == 4.0
    assert report["steps"]["tcp_to_tls"]["max"] == 2.5
    assert report["steps"]["sent_to_read"]["count"] == 2
    assert report["first_1_answered"] == {
        "count": 1,
        "drop_to_tcp_median": 0.5,
        "tcp_to_tls_median": 0.5,
        "tls_to_sent_median": 0.0,
        "sent_to_read_median": 0.25,
    }
    assert MARKS[DROP] == "drop"


def test_busy_share_is_cpu_over_wall_time_within_the_window() -> None:
    sampler = CpuSampler(lambda: 0.0, lambda: 0.0)
    sampler.samples = [(0.0, 1.0, 0.0), (1.0, 1.5, 0.25), (2.0, 2.5, 1.25), (3.0, 2.5, 1.25)]
    assert sampler.busy(0.5, 2.0) == {"seconds": 1.5, "cp_percent": 100.0, "harness_percent": 100.0}
    assert sampler.busy(0.0, 3.0)["cp_percent"] == 50.0
    assert sampler.busy(2.5, 2.9)["cp_percent"] is None
