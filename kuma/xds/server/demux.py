"""One port for gRPC (ADS) and plain HTTP/1.1 (kuma-dp's bootstrap), as Kuma's dp server does.

Every connection to the dp server starts in a :class:`PeekingProtocol`, which holds the first
bytes until they tell the two apart: an HTTP/2 client (Envoy, any gRPC client) opens with the
fixed preface ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n``, which no HTTP/1 request line can
start with. The connection is then handed over for good: ``transport.set_protocol`` makes
asyncio call the chosen protocol directly, which gets ``connection_made`` and the bytes read so
far, exactly as if it had accepted the connection itself. No bytes are copied after that.

The server side of HTTP/2 speaks only after the client preface, so holding the connection back
until the first bytes arrive changes nothing a client can see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from ssl import SSLContext
from typing import Any

from grpclib.server import Handler, Server

from . import frame_repr, huffman
from .admission import Admission
from .tls import TlsServerProtocol

#: What every HTTP/2 client sends first (RFC 9113, 3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

ProtocolFactory = Callable[[], asyncio.Protocol]

#: Connections' handlers kept before closed ones are first looked for (SharedPortServer).
_MIN_COLLECT = 64


class _Counter:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


_lost = _Counter()
_made = _Counter()


def lost_connections() -> int:
    """HTTP/2 connections lost in this process so far (kuma-cp's heap freezer collects the
    state they leave once many have gone, kuma/cp/gc_freeze.py)."""
    return _lost.count


def connection_events() -> int:
    """Connections accepted plus HTTP/2 connections lost in this process so far: any move is
    activity to kuma-cp's heap freezer (kuma/cp/gc_freeze.py)."""
    return _made.count + _lost.count


class PeekingProtocol(asyncio.Protocol):
    """Holds a new connection until its first bytes pick the protocol that serves it."""

    def __init__(
        self,
        http2: ProtocolFactory,
        http1: ProtocolFactory,
        undecided: set[PeekingProtocol],
        release: Callable[[], None] | None = None,
    ) -> None:
        self._http2 = http2
        self._http1 = http1
        self._undecided = undecided
        #: Gives the connection's admission place back (.admission): an HTTP/1 request needs
        #: none, and a connection lost before its choice has no use for it.
        self._release = release
        self._transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._undecided.add(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        size = min(len(self._buffer), len(HTTP2_PREFACE))
        if self._buffer[:size] != HTTP2_PREFACE[:size]:
            self._hand_over(self._http1)
        elif size == len(HTTP2_PREFACE):
            self._hand_over(self._http2)
        # else: a prefix of the preface so far; wait for more bytes

    def _hand_over(self, factory: ProtocolFactory) -> None:
        transport = self._transport
        assert transport is not None
        self._undecided.discard(self)
        if factory is self._http1 and self._release is not None:
            self._release()
        protocol = factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(self._buffer)
        self._buffer = b""

    def eof_received(self) -> bool:
        # The client went away before saying anything useful: close our side too.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._undecided.discard(self)
        if self._release is not None:
            self._release()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class SharedPortServer(Server):
    """grpclib's server, whose connections that are not HTTP/2 go to ``http1``; with ``tls``
    every connection is TLS first (.tls: leaner per connection than asyncio's own layer).

    grpclib builds one ``H2Protocol`` per connection in ``_protocol_factory`` (the factory it
    hands to ``loop.create_server``); this wraps that single method, so everything else of the
    server (handlers, close, wait_closed) is grpclib's own. ``close`` also aborts connections
    still waiting for their first bytes, which grpclib does not know about.
    """

    def __init__(
        self,
        handlers: Collection[Any],
        http1: ProtocolFactory,
        tls: SSLContext | None = None,
        admission: Admission | None = None,
    ) -> None:
        super().__init__(handlers)
        # h2 formats every received frame for a trace line: cheaply from now on (.frame_repr).
        frame_repr.install()
        # hpack decodes the token header's Huffman code a nibble at a time: a byte at a time
        # from now on (.huffman).
        huffman.install()
        self._http1 = http1
        self._tls = tls
        self._admission = admission
        self._undecided: set[PeekingProtocol] = set()
        self._collect_at = _MIN_COLLECT

    def __gc_step__(self) -> None:
        # grpclib calls this per new connection and, every 10th, rebuilds the set of every
        # connection's handler to drop the closed ones: O(connections) each time, so the cost
        # per connecting proxy grew with the number connected (about 0.1 ms at 10,000). Here
        # only once the set has doubled since the last time: O(1) per connection. Handlers of
        # lost connections leave on their own (_http2); this sweep is what is left of grpclib's.
        if len(self._handlers) >= self._collect_at:
            self.__gc_collect__()
            self._collect_at = max(2 * len(self._handlers), _MIN_COLLECT)

    # grpclib declares H2Protocol; asyncio only needs a protocol, which is what this returns.
    def _protocol_factory(self) -> asyncio.BaseProtocol:  # type: ignore[override]
        _made.count += 1
        if self._admission is None:
            return self._connection(None)
        return self._admission.protocol(self._connection)

    def _http2(self) -> asyncio.Protocol:
        """grpclib's protocol for one HTTP/2 connection, whose handler leaves the server's set
        once the connection is lost and its streams' tasks have ended.

        The set held a lost connection's handler until the next sweep (__gc_step__, once the set
        has doubled: up to as many closed handlers as open ones), and the handler holds its
        cancelled streams' tasks, whose CancelledError keeps the frames of the stream (h2 and
        grpclib state, the ADS stream's). In a mass reconnect the sweep comes soon anyway (no
        RSS difference measured at 2,000, benchmarks/RESULTS.md); what this bounds is the
        steady churn's worst case. Each lost connection is also counted (lost_connections)."""
        protocol = Server._protocol_factory(self)
        handler = protocol.handler
        if not isinstance(handler, Handler):
            return protocol  # not grpclib's own: left to the sweep
        connection_lost = protocol.connection_lost

        def lost(exc: BaseException | None) -> None:
            connection_lost(exc)  # grpclib's: the handler closes, its tasks are cancelled
            _lost.count += 1
            closed = asyncio.ensure_future(handler.wait_closed())
            closed.add_done_callback(lambda _: self._handlers.discard(handler))

        protocol.connection_lost = lost  # type: ignore[method-assign]
        return protocol

    def _connection(self, release: Callable[[], None] | None) -> asyncio.BaseProtocol:
        """The protocols serving one connection; ``release`` gives its admission place back."""
        peeking = PeekingProtocol(self._http2, self._http1, self._undecided, release)
        if self._tls is None:
            return peeking
        # TLS sees every end of the connection (a failed handshake too).
        return TlsServerProtocol(self._tls, peeking, on_lost=release)

    def close(self) -> None:
        super().close()
        if self._admission is not None:
            self._admission.abort_waiting()
        for protocol in list(self._undecided):
            protocol.abort()
