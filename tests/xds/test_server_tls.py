"""The dp server's own TLS layer (kuma/xds/server/tls.py), against asyncio's TLS client."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from kuma.tls.certs import generate_ca_certificate
from kuma.tls.persisted import ServingCertificate
from kuma.xds.server.tls import (
    RECEIVE_SLICE,
    SLICE,
    TlsServerProtocol,
    TlsTransport,
    _shared_read_buffer,
)
from tests.fixtures.polling import until

pytestmark = pytest.mark.anyio

#: Larger than the read size, the slices and a TLS record, and not a multiple of any.
BIG = 300_001


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # asyncio transports and protocols are what is under test


@pytest.fixture(scope="module")
def certificate() -> ServingCertificate:
    chain, key = generate_ca_certificate(["127.0.0.1"])
    return ServingCertificate(chain, key, chain, "test")


def client_context(certificate: ServingCertificate) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=certificate.trusted.decode())
    context.set_alpn_protocols(["h2"])
    return context


class App(asyncio.Protocol):
    """Echoes what it receives and records what the TLS layer tells it."""

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.events: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.echo and self.transport is not None:
            self.transport.write(data)

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")


@asynccontextmanager
async def tls_server(
    certificate: ServingCertificate, app: Callable[[], App], handshake_timeout: float = 60.0
) -> AsyncIterator[tuple[int, list[App]]]:
    apps: list[App] = []
    context = certificate.server_context()

    def factory() -> TlsServerProtocol:
        apps.append(app())
        return TlsServerProtocol(context, apps[-1], handshake_timeout)

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], apps
    finally:
        server.close()


async def test_bytes_cross_both_ways_intact(certificate: ServingCertificate) -> None:
    payload = bytes(i % 251 for i in range(BIG))
    async with tls_server(certificate, App) as (port, apps):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(certificate)
        )
        writer.write(payload)
        assert await reader.readexactly(BIG) == payload
        tls = writer.get_extra_info("ssl_object")
        assert tls.selected_alpn_protocol() == "h2"
        server_transport = apps[0].transport
        assert server_transport is not None
        assert server_transport.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        assert server_transport.get_extra_info("peername") == writer.get_extra_info("sockname")
        assert server_transport.get_extra_info("sslcontext") is not None
        writer.close()
        await writer.wait_closed()
        # close_notify from the client: EOF, then the connection ends.
        await until(lambda: apps[0].events == ["made", "eof", "lost"], within=5)


async def test_closing_sends_close_notify(certificate: ServingCertificate) -> None:
    async with tls_server(certificate, lambda: App(echo=False)) as (port, apps):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(certificate)
        )
        writer.write(b"x")
        await until(lambda: bool(apps and apps[0].received), within=5)
        transport = apps[0].transport
        assert transport is not None
        transport.write(b"last words")
        transport.close()
        assert transport.is_closing()
        # A clean TLS end: the bytes, then EOF (no "unexpected EOF" error).
        assert await reader.read() == b"last words"
        writer.close()
        await until(lambda: apps[0].events[-1] == "lost", within=5)


async def test_a_plain_text_client_is_dropped_and_others_still_served(
    certificate: ServingCertificate,
) -> None:
    async with tls_server(certificate, App) as (port, apps):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await reader.read() == b""  # closed, nothing answered
        writer.close()
        assert apps[0].events == []  # the application never saw it
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(certificate)
        )
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        writer.close()


async def test_a_client_that_never_handshakes_is_dropped(
    certificate: ServingCertificate,
) -> None:
    async with tls_server(certificate, App, handshake_timeout=0.2) as (port, apps):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            # Aborted by the server: a reset, or an EOF if the kernel reports it so.
            await asyncio.wait_for(reader.readexactly(1), timeout=10)
        writer.close()
        assert apps[0].events == []


async def test_write_pressure_pauses_and_resumes_the_application(
    certificate: ServingCertificate,
) -> None:
    async with tls_server(certificate, lambda: App(echo=False)) as (port, apps):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(certificate)
        )
        writer.write(b"go")
        await until(lambda: bool(apps and apps[0].received), within=5)
        transport = apps[0].transport
        assert transport is not None
        chunk = b"z" * (SLICE * 16 + 3)
        sent = 0
        # The client reads nothing: the socket fills, and the application is told to stop.
        while "pause" not in apps[0].events:
            transport.write(chunk)
            sent += len(chunk)
            assert sent < 256 * 1024 * 1024, "never paused"
            await asyncio.sleep(0)
        assert transport.get_write_buffer_size() > 0
        received = 0
        while received < sent:
            received += len(await reader.read(1024 * 1024))
        assert received == sent
        await until(lambda: apps[0].events[-1] == "resume", within=5)
        writer.close()


async def test_a_connections_tls_objects_carry_no_attribute_dict(
    certificate: ServingCertificate,
) -> None:
    # Two per connected proxy: a __dict__ each would be ~0.5 KB more per proxy.
    async with tls_server(certificate, App) as (port, apps):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(certificate)
        )
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        transport = apps[0].transport
        assert transport is not None
        assert not hasattr(transport, "__dict__")
        protocol = transport.get_protocol()
        assert protocol is apps[0]
        assert isinstance(transport, TlsTransport)
        assert not hasattr(transport._tls, "__dict__")
        writer.close()
        await writer.wait_closed()


class DrainCheckingProtocol(TlsServerProtocol):
    """Records the most bytes the incoming BIO held when OpenSSL was asked to take them."""

    __slots__ = ("most_held",)

    def _advance(self) -> None:
        self.most_held = max(getattr(self, "most_held", 0), self._incoming.pending)
        super()._advance()


async def test_received_bytes_are_drained_into_openssl_slice_by_slice(
    certificate: ServingCertificate,
) -> None:
    # The incoming memory BIO keeps the largest size it ever held for the connection's life:
    # OpenSSL must take each slice at once (its own read buffer is released after a record),
    # or a 16 KiB record would sit whole in the BIO (+17 KB per connection).
    context = certificate.server_context()
    protocols: list[DrainCheckingProtocol] = []

    def factory() -> DrainCheckingProtocol:
        protocols.append(DrainCheckingProtocol(context, App(echo=False)))
        return protocols[-1]

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(certificate)
        )
        payload = bytes(i % 251 for i in range(61 * 1024))  # Envoy's first request's weight
        writer.write(payload)
        app = protocols[0].app
        assert isinstance(app, App)
        await until(lambda: len(app.received) == len(payload), within=5)
        assert 0 < protocols[0].most_held <= RECEIVE_SLICE
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()


class RawWrites(asyncio.Transport):
    """Collects what the TLS layer writes to its socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data


async def test_what_is_sent_goes_out_in_records_of_a_slice_at_most(
    certificate: ServingCertificate,
) -> None:
    # The outgoing BIO keeps the size of the largest record ever put in it, for the
    # connection's life: a large write must become records of a slice each.
    server = TlsServerProtocol(certificate.server_context(), App(echo=False))
    raw = RawWrites()
    server.connection_made(raw)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context(certificate).wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    for _ in range(5):  # the handshake, in memory
        with contextlib.suppress(ssl.SSLWantReadError):
            client.do_handshake()
        data = outgoing.read()
        _shared_read_buffer[: len(data)] = data
        server.buffer_updated(len(data))
        incoming.write(bytes(raw.written))
        raw.written.clear()
    assert server.app.transport is not None  # type: ignore[attr-defined]
    server.app.transport.write(b"w" * (SLICE * 5 + 7))  # type: ignore[attr-defined]
    stream, sizes = bytes(raw.written), []
    while stream:
        sizes.append(int.from_bytes(stream[3:5], "big"))
        stream = stream[5 + sizes[-1] :]
    assert len(sizes) >= 6
    assert max(sizes) <= SLICE + 64  # a slice plus the cipher's tag and content type
    incoming.write(bytes(raw.written))
    received = b""
    with contextlib.suppress(ssl.SSLWantReadError):
        while True:
            received += client.read(SLICE * 6)
    assert received.endswith(b"w" * (SLICE * 5 + 7))
