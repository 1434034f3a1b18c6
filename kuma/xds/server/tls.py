"""TLS for the dp server's accepted connections, lean in memory per connection.

asyncio's own TLS layer (``loop.create_server(ssl=...)``, asyncio.sslproto) costs about 55 KB
per idle connection with 10,000 proxies connected, most of it buffers that stay allocated for
the connection's life (measured with memray, benchmarks/RESULTS.md "kuma-cp's memory per
connected proxy"):

* OpenSSL's 16 KB record read buffer. OpenSSL frees it once a record is consumed
  (``SSL_MODE_RELEASE_BUFFERS``, which Python sets), but asyncio always reads once more until
  OpenSSL says it wants more bytes, and that last read allocates the buffer again and keeps it.
  Here a read is only attempted while there are bytes to read.
* a read buffer of its own per connection (8 KiB even at kuma-cp's setting). Here one buffer is
  shared: the event loop hands each connection's bytes over synchronously, one at a time.
* the two OpenSSL memory BIOs, which grow to the largest amount ever written into them at once
  and never shrink. Here bytes go in, both ways, in slices of a KiB or two; a write's records are
  collected and go to the socket at once.

The protocol is a server for one accepted connection: it completes the handshake (with a
deadline), then hands the plain-text side to an application protocol through
:class:`TlsTransport`, which speaks asyncio's ``Transport`` API (``set_protocol`` included,
which the port demultiplexer uses). Closing sends ``close_notify`` and closes the socket without
waiting for the peer's (as most servers do); a peer's ``close_notify`` or a TCP EOF is the
application's ``eof_received`` followed by the close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

from .teardown import tear_down_later

log = logging.getLogger(__name__)

#: Bytes read from a socket at a time, into the buffer every connection shares.
READ_SIZE = 64 * 1024
#: Bytes moved into OpenSSL at a time, each way: what each memory BIO grows to (plus a third).
#: Received bytes go in smaller pieces (a 61 KB first request is 61 steps of a microsecond;
#: each step must be read at once, or the BIO grows to a whole 16 KiB record).
#: Sent slices are TLS records, collected per write into one socket write: the outgoing BIO
#: keeps the size of the largest record (and of the handshake's flight, which is smaller).
#: 1 KiB: 20.1 KB per idle connection against 21.8 with 2 KiB (benchmarks/bench_tls_memory.py,
#: 2,000 connections; 5.5 KB for the BIO alone with 4 KiB, memray); the price is one more
#: record per KiB written, about 1.6 µs each (+1.6 µs for a 1-2 KiB fan-out response, +25 µs
#: for 30 KB of first responses).
RECEIVE_SLICE = 1024
SLICE = 1024
#: Seconds a client has to complete its handshake (asyncio's default).
HANDSHAKE_TIMEOUT = 60.0
#: The largest plain-text read asked of OpenSSL (one TLS record).
_RECORD = 16 * 1024

_shared_read_buffer = memoryview(bytearray(READ_SIZE))


class TlsServerProtocol(asyncio.BufferedProtocol):
    """The TLS server side of one connection; ``app`` gets the decrypted stream."""

    # Slotted, as its transport: two per connected proxy (a dict each would be ~0.5 KB).
    __slots__ = (
        "_app",
        "_app_transport",
        "_closing",
        "_context",
        "_deadline",
        "_handshake_timeout",
        "_incoming",
        "_on_lost",
        "_outgoing",
        "_raw",
        "_tls",
    )

    def __init__(
        self,
        context: ssl.SSLContext,
        app: asyncio.Protocol,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._context = context
        self._app = app
        self._handshake_timeout = handshake_timeout
        #: Told when the connection ends, however (a failed handshake included).
        self._on_lost = on_lost
        self._raw: asyncio.Transport | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls: ssl.SSLObject | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._app_transport: TlsTransport | None = None
        self._closing = False

    # The socket's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        self._tls = self._context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._handshake_timeout, self._handshake_too_slow)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _shared_read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # Copied into OpenSSL before the next connection's bytes land in the shared buffer.
        view = _shared_read_buffer[:nbytes]
        for start in range(0, nbytes, RECEIVE_SLICE):
            if self._closing or self._tls is None:
                return
            self._incoming.write(view[start : start + RECEIVE_SLICE])
            self._advance()

    def eof_received(self) -> bool:
        # TCP closed without close_notify: the application hears EOF, then the connection closes.
        if self._app_transport is not None:
            self._app.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._closing = True
        app_transport, self._app_transport = self._app_transport, None
        if self._on_lost is not None:
            self._on_lost()
        if app_transport is None:
            # Drop OpenSSL's state now rather than when the last reference goes.
            self._tls = None
            return
        # The application's end (its streams torn down) and OpenSSL's state freed come a
        # batch per loop pass (.teardown): a mass disconnect must not hold up the reconnects.
        tear_down_later(lambda: self._torn_down(exc))

    def _torn_down(self, exc: Exception | None) -> None:
        self._tls = None
        self._app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._app_transport is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app_transport is not None:
            self._app.resume_writing()

    # TLS.

    def _advance(self) -> None:
        tls = self._tls
        assert tls is not None
        if self._app_transport is None:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
                self._fail("TLS handshake failed", exc)
                return
            self._handshake_done()
        chunks: list[bytes] = []
        eof = False
        # Only while there is something to read: a read on an empty BIO would allocate
        # OpenSSL's record buffer and keep it until the next record.
        while self._incoming.pending or tls.pending():
            try:
                chunk = tls.read(_RECORD)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError as exc:
                self._fail("TLS error", exc)
                return
            if not chunk:
                eof = True
                break
            chunks.append(chunk)
        self._flush()
        if chunks:
            self._app.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if eof and not self._closing:
            self._app.eof_received()
            self.close()

    def _handshake_done(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._flush()
        self._app_transport = TlsTransport(self)
        self._app.connection_made(self._app_transport)

    def _handshake_too_slow(self) -> None:
        self._deadline = None
        if self._app_transport is None:
            self._fail("TLS handshake timed out", None)

    def _fail(self, what: str, exc: BaseException | None) -> None:
        raw = self._raw
        peer = raw.get_extra_info("peername") if raw is not None else None
        # A client that cannot speak TLS to us is its problem, not the server's: debug only.
        log.debug("%s with %s: %s", what, peer, exc)
        self._closing = True
        if raw is not None:
            raw.abort()

    def _flush(self) -> None:
        if self._outgoing.pending and self._raw is not None:
            self._raw.write(self._outgoing.read())

    # The application's side (through TlsTransport).

    def write(self, data: bytes | bytearray | memoryview) -> None:
        tls = self._tls
        if self._closing or tls is None:
            return
        view = memoryview(data)
        try:
            if len(view) <= SLICE:
                tls.write(view)
                self._flush()
                return
            records = []
            for start in range(0, len(view), SLICE):
                tls.write(view[start : start + SLICE])
                records.append(self._outgoing.read())
            if self._raw is not None:
                self._raw.write(b"".join(records))
        except ssl.SSLError as exc:
            self._fail("TLS error on write", exc)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        tls = self._tls
        if tls is not None:
            # Queues close_notify; the peer's is not waited for (unwrap then says it wants to read).
            with contextlib.suppress(ssl.SSLError, OSError):
                tls.unwrap()
            self._flush()
        if self._raw is not None:
            self._raw.close()

    def abort(self) -> None:
        self._closing = True
        if self._raw is not None:
            self._raw.abort()

    def is_closing(self) -> bool:
        return self._closing or self._raw is None or self._raw.is_closing()

    def set_app(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._app = protocol

    @property
    def app(self) -> asyncio.Protocol:
        return self._app

    @property
    def raw(self) -> asyncio.Transport:
        assert self._raw is not None
        return self._raw

    def extra(self, name: str, default: Any) -> Any:
        tls = self._tls
        if name == "ssl_object":
            return tls
        if name == "sslcontext":
            return self._context
        if tls is not None:
            if name == "peercert":
                return tls.getpeercert()
            if name == "cipher":
                return tls.cipher()
            if name == "compression":
                return tls.compression()
        return self.raw.get_extra_info(name, default)


class TlsTransport(asyncio.Transport):
    """The plain-text side of a :class:`TlsServerProtocol`, as an asyncio transport."""

    __slots__ = ("_tls",)

    def __init__(self, tls: TlsServerProtocol) -> None:
        super().__init__()
        self._tls = tls

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._tls.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False  # TLS has no half-close

    def write_eof(self) -> None:
        raise NotImplementedError("TLS connections cannot be half-closed")

    def close(self) -> None:
        self._tls.close()

    def abort(self) -> None:
        self._tls.abort()

    def is_closing(self) -> bool:
        return self._tls.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._tls.extra(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._tls.set_app(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._tls.app

    def is_reading(self) -> bool:
        return self._tls.raw.is_reading()

    def pause_reading(self) -> None:
        self._tls.raw.pause_reading()

    def resume_reading(self) -> None:
        self._tls.raw.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tls.raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._tls.raw.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._tls.raw.get_write_buffer_limits()
