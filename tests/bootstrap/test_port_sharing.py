"""The dp server port's demultiplexer: HTTP/2 (ADS) and HTTP/1.1 (bootstrap) told apart by
their first bytes (kuma/xds/server/demux.py)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import anyio
import pytest
from grpclib.client import Channel
from grpclib.server import Server

from kuma.xds.generate.types import CLUSTER
from kuma.xds.server import AdsServer, serve
from kuma.xds.server.demux import (
    HTTP2_PREFACE,
    PeekingProtocol,
    SharedPortServer,
    connection_events,
)
from tests.fixtures.polling import until
from tests.xds.fakes import DEADLINE, FakeSource, delta_stream


class Recorder(asyncio.Protocol):
    def __init__(self, name: str, log: list[Any]) -> None:
        self.name, self.log = name, log

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.log.append((self.name, "made", transport))

    def data_received(self, data: bytes) -> None:
        self.log.append((self.name, "data", data))


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.protocol: asyncio.BaseProtocol | None = None
        self.aborted = False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def abort(self) -> None:
        self.aborted = True


def peeking() -> tuple[PeekingProtocol, FakeTransport, list[Any], set[PeekingProtocol]]:
    log: list[Any] = []
    undecided: set[PeekingProtocol] = set()
    protocol = PeekingProtocol(lambda: Recorder("h2", log), lambda: Recorder("h1", log), undecided)
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport, log, undecided


def feed(protocol: PeekingProtocol, data: bytes, step: int) -> None:
    for start in range(0, len(data), step):
        protocol.data_received(data[start : start + step])


@pytest.mark.parametrize("step", [1, 5, 24, 100])
def test_http2_preface_goes_to_grpc_whatever_the_packet_sizes(step: int) -> None:
    protocol, transport, log, undecided = peeking()
    assert undecided == {protocol}
    data = HTTP2_PREFACE + b"\x00\x00\x00\x04"  # and a frame header behind it
    feed(protocol, data[:24], step)
    assert [entry[:2] for entry in log] == [("h2", "made"), ("h2", "data")]
    assert log[0][2] is transport
    assert log[1][2] == data[:24]
    assert isinstance(transport.protocol, Recorder)
    assert transport.protocol.name == "h2"
    assert undecided == set()


@pytest.mark.parametrize(
    ("data", "decided_after"),
    [
        (b"POST /bootstrap HTTP/1.1\r\n", 2),  # "PO" is not "PR"
        (b"GET / HTTP/1.1\r\n", 1),
        (b"PRI * HTTP/1.1\r\n", 12),  # a near miss is HTTP/1 too
    ],
)
def test_anything_else_goes_to_http1(data: bytes, decided_after: int) -> None:
    protocol, transport, log, undecided = peeking()
    feed(protocol, data[: decided_after - 1], 1)
    assert log == []  # still undecided
    feed(protocol, data[decided_after - 1 :], 1)
    assert log[0][:2] == ("h1", "made")
    assert log[1] == ("h1", "data", data[:decided_after])
    # Later bytes go to the chosen protocol through the transport, not through the peeker.
    assert isinstance(transport.protocol, Recorder)
    assert transport.protocol.name == "h1"
    assert undecided == set()


def test_a_connection_that_ends_before_deciding() -> None:
    protocol, _, log, undecided = peeking()
    protocol.data_received(b"PRI")
    assert protocol.eof_received() is False  # close our side too
    protocol.connection_lost(None)
    assert log == []
    assert undecided == set()


@pytest.mark.anyio
async def test_closing_the_server_drops_silent_connections() -> None:
    """A client that connects and says nothing must not keep the server from closing."""

    def http1() -> asyncio.Protocol:
        raise AssertionError("never chosen")

    serving = anyio.CancelScope()
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:

            async def run(*, task_status: Any) -> None:
                with serving:
                    await serve(FakeSource(), "127.0.0.1", 0, http1=http1, task_status=task_status)

            port: int = await tg.start(run)
            silent = socket.create_connection(("127.0.0.1", port))
            silent.setblocking(False)
            await anyio.sleep(0.05)
            serving.cancel()
    # The server is gone and so is the silent connection (EOF or reset, not a hang).
    loop = asyncio.get_running_loop()
    try:
        with anyio.fail_after(DEADLINE):
            assert await loop.sock_recv(silent, 1) == b""
    except ConnectionResetError:
        pass
    finally:
        silent.close()


@pytest.mark.anyio
async def test_closed_connections_handlers_are_dropped_in_amortised_constant_time() -> None:
    """grpclib rebuilt the set of every connection's handler each 10th new connection, so a
    proxy's connecting cost grew with the number connected; the work per connection must not."""
    scanned = 0

    class Counting(SharedPortServer):
        def __gc_collect__(self) -> None:
            nonlocal scanned
            scanned += len(self._handlers)
            super().__gc_collect__()

    def http1() -> asyncio.Protocol:
        raise AssertionError("never chosen")

    server = Counting([AdsServer(FakeSource())], http1)
    connections = 3000
    for index in range(connections):
        Server._protocol_factory(server)  # what the demultiplexer calls for HTTP/2
        if index % 2:
            # Every other connection has ended: its handler is closed, with no stream left.
            handler = next(h for h in server._handlers if not h.closing)
            handler.close()
    assert scanned <= 4 * connections
    # The closed ones do go: never more kept than twice the open ones (and a few).
    assert len(server._handlers) <= 2 * (connections // 2) + 64
    assert sum(not h.closing for h in server._handlers) == connections // 2


@pytest.mark.anyio
async def test_a_lost_connections_handler_leaves_the_server_at_once() -> None:
    """A lost connection's handler (holding its streams' ended tasks, and through them the
    streams' state) leaves the server's set when its tasks have ended, not at the next sweep."""

    def http1() -> asyncio.Protocol:
        raise AssertionError("never chosen")

    source = FakeSource()
    source.proxy().put(CLUSTER, "a")
    server = SharedPortServer([AdsServer(source)], http1)
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    await server.start(sock=listening)
    events = connection_events()
    try:
        with anyio.fail_after(DEADLINE):
            for done in range(1, 4):
                async with Channel("127.0.0.1", port) as channel, delta_stream(channel) as client:
                    await client.send(CLUSTER)
                    await client.ack(await client.recv())
                    assert len(server._handlers) == 1
                    assert connection_events() - events == 2 * done - 1  # made: counted
                await until(lambda: not server._handlers, within=DEADLINE)
                assert connection_events() - events == 2 * done  # and lost
    finally:
        server.close()
        await server.wait_closed()
