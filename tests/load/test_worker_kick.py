"""kuma.load.worker's ``kick`` (mass reconnect): every connection ends for the server at once,
the new connections start before the old streams are torn down, and each sidecar comes back
exactly once with nothing counted as an error."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryResponse
from grpclib.server import Server

from kuma.load.wire import CDS, TYPES
from kuma.load.worker import Worker
from kuma.xds.server.service import AggregatedDiscoveryServiceBase
from tests.fixtures.polling import until

pytestmark = pytest.mark.anyio

SIDECARS = 12


class Streams(AggregatedDiscoveryServiceBase):
    """Answers each stream's first request, then holds the stream until its client ends it;
    counts the streams opened and ended."""

    def __init__(self) -> None:
        self.opened = 0
        self.ended = 0
        self.changed = asyncio.Event()

    async def StreamAggregatedResources(self, stream: Any) -> None:
        raise NotImplementedError

    async def DeltaAggregatedResources(self, stream: Any) -> None:
        await stream.recv_message()
        self.opened += 1
        self.changed.set()
        try:
            await stream.send_message(DeltaDiscoveryResponse(type_url=TYPES[CDS], nonce="1"))
            async for _ in stream:
                pass
        finally:
            self.ended += 1
            self.changed.set()

    async def until(self, condition: Any) -> None:
        while not condition():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 20)


async def _never_retire(self: Worker) -> None:
    """The old runs are never cancelled: what the drop alone does."""


@pytest.mark.parametrize("retire", [True, False])
async def test_kick_drops_every_connection_at_once_and_tears_down_after(
    monkeypatch: pytest.MonkeyPatch, retire: bool
) -> None:
    if not retire:
        monkeypatch.setattr(Worker, "_retire", _never_retire)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(SIDECARS * 2)
    handler = Streams()
    server = Server([handler])
    await server.start(sock=listener)
    worker = Worker()
    worker.init(
        {
            "host": "127.0.0.1",
            "port": listener.getsockname()[1],
            "seed": 1,
            "node": "minimal",
            "sidecars": [(i, f"default.s-{i}", 0.0, 0.0) for i in range(SIDECARS)],
        }
    )
    try:
        worker.connect(0)
        await handler.until(lambda: handler.opened == SIDECARS)
        await until(lambda: all(s.streaming for s in worker.sidecars.values()))
        old = list(worker.tasks.values())
        worker.kick(0)
        # The new runs exist and no old run is cancelled yet: their teardown comes after
        # the new connections' first steps.
        assert len(worker.tasks) == SIDECARS
        assert not set(worker.tasks.values()) & set(old)
        assert all(t.cancelling() == 0 for t in old)
        # Every old stream ends for the server (even if the old runs are never cancelled:
        # the drop did it), and every sidecar is back once.
        await handler.until(lambda: handler.ended == SIDECARS and handler.opened == 2 * SIDECARS)
        # The old runs end (cancelled, or on their own once the server closed), quietly.
        await asyncio.wait_for(asyncio.gather(*old, return_exceptions=True), 20)
        assert worker.status()["counters"]["errors"] == 0
        assert all(s.streaming for s in worker.sidecars.values())
        assert all(not t.done() for t in worker.tasks.values())
        assert handler.opened == 2 * SIDECARS
    finally:
        await worker.stop()
        server.close()
        await server.wait_closed()
