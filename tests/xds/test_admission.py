"""Admission control of the dp server's new connections (kuma/xds/server/admission.py): a
bounded number being set up at once, the rest waiting unread in arrival order, a place given
back when the connection's ADS stream is assembled, chose HTTP/1, was lost, or held too long."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import anyio
import pytest
from grpclib.client import Channel

from kuma.xds.generate.types import CLUSTER
from kuma.xds.server import serve
from kuma.xds.server.admission import Admission
from tests.fixtures.polling import until

from .fakes import DEADLINE, FakeSource, delta_state, delta_stream

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # asyncio transports and protocols are what is under test


class App(asyncio.Protocol):
    """What an admitted connection is handed to: records what it sees."""

    def __init__(self, release: Callable[[], None]) -> None:
        self.release = release
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.release()


@asynccontextmanager
async def admitting(admission: Admission) -> AsyncIterator[tuple[int, list[App]]]:
    apps: list[App] = []

    def factory(release: Callable[[], None]) -> App:
        apps.append(App(release))
        return apps[-1]

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: admission.protocol(factory), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], apps
    finally:
        server.close()
        admission.abort_waiting()


def client(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(data)
    return sock


def peer_of(app: App) -> object:
    assert app.transport is not None
    return app.transport.get_extra_info("peername")


async def test_at_most_limit_set_up_at_once_the_rest_in_arrival_order() -> None:
    admission = Admission(limit=2, hold=60)
    async with admitting(admission) as (port, apps):
        socks = [client(port, b"hello %d" % index) for index in range(4)]
        try:
            await until(lambda: admission.waiting == 2 and len(apps) == 2, within=DEADLINE)
            names = [s.getsockname() for s in socks]
            assert [peer_of(app) for app in apps] == names[:2]
            # The admitted read their first bytes; the held are not read at all.
            await until(lambda: [bytes(app.received) for app in apps] == [b"hello 0", b"hello 1"])
            # The second is set up first: the third connection (not the fourth) takes its place.
            admission.settled(names[1])
            await until(lambda: len(apps) == 3, within=DEADLINE)
            assert peer_of(apps[2]) == names[2]
            await until(lambda: apps[2].received == b"hello 2", within=DEADLINE)
            assert (admission.active, admission.waiting) == (2, 1)
            # Settling again, or an unknown peer, frees nothing more.
            admission.settled(names[1])
            admission.settled(("127.0.0.1", 1))
            assert (admission.active, len(apps)) == (2, 3)
            # A connection lost once admitted gives its place back.
            socks[0].close()
            await until(lambda: len(apps) == 4, within=DEADLINE)
            assert apps[0].lost
            assert peer_of(apps[3]) == names[3]
            await until(lambda: apps[3].received == b"hello 3", within=DEADLINE)
        finally:
            for sock in socks:
                sock.close()


async def test_a_place_held_too_long_goes_to_the_next() -> None:
    admission = Admission(limit=1, hold=0.2)
    async with admitting(admission) as (port, apps):
        silent = socket.create_connection(("127.0.0.1", port))
        await until(lambda: len(apps) == 1, within=DEADLINE)
        second = client(port, b"next")
        try:
            # The silent connection stays open; after the hold the second is admitted anyway.
            await until(lambda: len(apps) == 2, within=DEADLINE)
            assert not apps[0].lost
            await until(lambda: apps[1].received == b"next", within=DEADLINE)
        finally:
            silent.close()
            second.close()


async def test_a_held_connection_whose_client_left_is_skipped_unread() -> None:
    """Envoy abandons a connection not through its handshake within its connect timeout (1 s):
    its turn must not cost a handshake, nor a place."""
    admission = Admission(limit=1, hold=60)
    async with admitting(admission) as (port, apps):
        first = client(port, b"a")
        await until(lambda: len(apps) == 1, within=DEADLINE)
        gone = client(port, b"ClientHello")  # bytes then the close, as Envoy's timeout leaves
        await until(lambda: admission.waiting == 1, within=DEADLINE)
        gone.close()
        after = client(port, b"c")
        await until(lambda: admission.waiting == 2, within=DEADLINE)
        admission.settled(first.getsockname())
        # The abandoned one is skipped: the next connection is handed over, nothing else.
        await until(lambda: len(apps) == 2, within=DEADLINE)
        assert peer_of(apps[1]) == after.getsockname()
        await until(lambda: apps[1].received == b"c", within=DEADLINE)
        assert (admission.active, admission.waiting) == (1, 0)
        first.close()
        after.close()


async def test_a_connection_waits_max_wait_at_most() -> None:
    """Clients time their TLS handshake out (asyncio: 60 s): past ``max_wait`` a waiting
    connection is admitted beyond the limit, in arrival order."""
    admission = Admission(limit=1, hold=60, max_wait=0.2)
    async with admitting(admission) as (port, apps):
        first = client(port, b"a")
        await until(lambda: len(apps) == 1, within=DEADLINE)
        second = client(port, b"b")
        third = client(port, b"c")
        try:
            # The first still holds the only place; the others get in anyway, oldest first.
            await until(lambda: len(apps) == 3, within=DEADLINE)
            assert [peer_of(app) for app in apps[1:]] == [
                second.getsockname(),
                third.getsockname(),
            ]
            assert (admission.active, admission.waiting) == (3, 0)
            # Their places count: the first's settling admits nobody new, and lowers the count.
            admission.settled(first.getsockname())
            assert admission.active == 2
        finally:
            for sock in (first, second, third):
                sock.close()


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Admission(limit=0)
    with pytest.raises(ValueError, match="hold must be positive"):
        Admission(hold=0)
    with pytest.raises(ValueError, match="wait must be positive"):
        Admission(max_wait=0)


async def test_the_dp_server_admits_the_next_connection_once_a_stream_is_assembled() -> None:
    """One place: a proxy's stream, once its configuration is assembled, lets the next
    connection in while it stays connected; a silent connection holds the others back until
    it goes; an HTTP/1 request (kuma-dp's bootstrap) gives its place back once recognised."""
    source = FakeSource()
    for name in ("default.one", "default.two", "default.three"):
        source.proxy(name).put(CLUSTER, "c")
    admission = Admission(limit=1, hold=60)
    http1_seen = anyio.Event()

    class Http1(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            http1_seen.set()

    async with anyio.create_task_group() as tg:
        port: int = await tg.start(
            partial(serve, source, "127.0.0.1", 0, http1=Http1, admission=admission)
        )
        with anyio.fail_after(DEADLINE):
            async with (
                Channel("127.0.0.1", port) as one,
                Channel("127.0.0.1", port) as two,
                delta_stream(one, "default.one") as first,
            ):
                await first.send(CLUSTER)
                assert set(delta_state(await first.recv())) == {"c"}
                # Without the stream's settling, this waits for the 60 s hold.
                async with delta_stream(two, "default.two") as second:
                    await second.send(CLUSTER)
                    assert set(delta_state(await second.recv())) == {"c"}
                silent = socket.create_connection(("127.0.0.1", port))
                await until(lambda: admission.active == 1, within=DEADLINE)
                async with (
                    Channel("127.0.0.1", port) as three,
                    delta_stream(three, "default.three") as third,
                ):
                    await third.send(CLUSTER)
                    await until(lambda: admission.waiting == 1, within=DEADLINE)
                    assert "default.three" not in source.opened  # not read yet
                    silent.close()
                    assert set(delta_state(await third.recv())) == {"c"}
                bootstrap = client(port, b"POST /bootstrap HTTP/1.1\r\n")
                await http1_seen.wait()
                await until(lambda: admission.active == 0, within=DEADLINE)
                bootstrap.close()
        tg.cancel_scope.cancel()


async def test_a_connection_at_the_descriptor_ceiling_is_refused_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The proxies must not take the descriptors the store and the API need (kuma/open_files.py):
    at the ceiling a new connection is closed at once; the server goes on serving."""
    admission = Admission(limit=4, hold=60)
    assert admission.ceiling > 100  # from the process's limit, less the reserve
    async with admitting(admission) as (port, apps):
        admitted = client(port, b"a")
        await until(lambda: len(apps) == 1, within=DEADLINE)
        admission.ceiling = 0  # every descriptor is at or above it
        refused = [client(port, b"b"), client(port, b"c")]
        try:
            await until(lambda: admission.refused == 2, within=DEADLINE)
            for sock in refused:
                sock.settimeout(DEADLINE)
                with contextlib.suppress(ConnectionResetError):  # aborted: a reset or an end
                    assert sock.recv(1) == b""
            assert (len(apps), admission.waiting) == (1, 0)
            warnings = [r for r in caplog.records if "refusing dp connections" in r.message]
            assert len(warnings) == 1, warnings  # one warning per 10 s, not one per connection
            # Below the ceiling again (descriptors freed), connections are admitted.
            admission.ceiling = 2**20
            again = client(port, b"d")
            await until(lambda: len(apps) == 2, within=DEADLINE)
            await until(lambda: apps[1].received == b"d", within=DEADLINE)
            again.close()
        finally:
            admitted.close()
            for sock in refused:
                sock.close()
