"""Admission control for the dp server's new connections: at most ``limit`` connections at a
time are being set up (TLS handshake, HTTP/2 preface, first request, authentication, the
proxy's first assembly); the others wait, unread, in arrival order.

Why: when thousands of proxies connect at once (a control-plane restart, a network blip) the
event loop steps every connection's setup in lockstep, each step of one behind the same step
of all the others, so even the first proxy is answered only once nearly all are set up: 40 s
of 65 at 10,000 sidecars with TLS (benchmarks/RESULTS.md, "mass reconnect"). Bounded, the
connections are set up in arrival order and the first is answered at once; the total work is
the same.

A place is held from admission until the connection's first ADS stream has its proxy's
configuration assembled (:meth:`Admission.settled`, called by the stream), its protocol turned
out to be HTTP/1 (kuma-dp's bootstrap), or it is lost. Bounding only the handshake is not
enough (tried, benchmarks/RESULTS.md): every admitted connection's HTTP/2 setup and first
request then pile up behind the others just the same.

A place is also given back after ``hold`` seconds whatever the connection does (its setup goes
on, uncounted), so a client that connects and says nothing, or a slow one, delays the others
by at most that long (a client that closes gives it back at once).

Connections are admitted in arrival order, skipping those their client has closed meanwhile
(:meth:`HeldConnection.abandoned`). Envoy gives up on a connection whose TLS handshake has not
completed within its ADS cluster's connect timeout (1 s in Kuma's bootstrap) and reconnects
after a back-off; read normally, such a connection would still cost a full handshake (its
ClientHello is read before its close), and in a deep queue most of the work would go to
clients that have left. Skipped, it costs a poll; its client's new connection waits at the
back, fresh.

A connection waits ``max_wait`` seconds at most, then is admitted beyond the limit: clients
that wait patiently still time their handshake out (asyncio's after 60 s), and a storm long
enough for that would otherwise grow by their retries.

A held connection is already accepted (the kernel completes TCP by itself): it costs a socket
and this small protocol, and its client's first bytes wait in the socket buffer. Its reading
is paused, so the event loop does nothing for it until its turn.

A connection whose descriptor is at or above ``ceiling`` (the open-files limit less a reserve,
kuma/open_files.py) is refused: closed at once, counted, and warned about every 10 s, so the
proxies cannot take the descriptors the store and the API need.
"""

from __future__ import annotations

import asyncio
import logging
import select
from collections import deque
from collections.abc import Callable, Hashable

from kuma.open_files import Every, connection_ceiling

log = logging.getLogger(__name__)

#: Connections being set up at once. Enough to keep the event loop busy while clients answer
#: (a handshake and the first request are round trips), few enough that the first admitted
#: are answered within a fraction of a second (a connection's setup is a few milliseconds).
DEFAULT_LIMIT = 64

#: Seconds an admitted connection holds its place at most. Wall-clock seconds of an event loop
#: that may itself be starved of CPU: at 1 s, a kuma-cp getting a third of a core (a loaded
#: machine) could not set 64 connections up within it, every place timed out and the bound was
#: gone (measured: the first reconnecting proxy answered at 60 % of the storm again, as with
#: no bound). 64 setups take some 0.3 s of CPU.
DEFAULT_HOLD = 5.0

#: Seconds a connection waits for a place at most; then it is admitted beyond the limit.
#: Clients time their TLS handshake out (Python's asyncio after 60 s, kuma-load's sidecars
#: among them): in a storm longer than that, the last of a FIFO queue would time out, retry and
#: make the storm longer still. Envoy gives up after 1 s anyway (and is skipped, unread).
DEFAULT_MAX_WAIT = 20.0

#: What a socket reports once its peer closed its side (Linux: POLLRDHUP, even with data
#: still unread) or reset it.
_CLOSED = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR
#: One poll object for those checks (registered and unregistered around each).
_poll = select.poll()

#: Builds the protocol that serves an admitted connection; it calls ``release`` once the
#: connection is lost or chose a protocol that needs no place (HTTP/1).
ConnectionFactory = Callable[[Callable[[], None]], asyncio.BaseProtocol]


class Admission:
    """The places of one server's connections being set up, and the queue waiting for one."""

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        hold: float = DEFAULT_HOLD,
        max_wait: float = DEFAULT_MAX_WAIT,
        ceiling: int | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"the admission limit must be at least 1, not {limit}")
        if hold <= 0:
            raise ValueError(f"the admission hold must be positive, not {hold}")
        if max_wait <= 0:
            raise ValueError(f"the admission wait must be positive, not {max_wait}")
        self.limit = limit
        self.hold = hold
        self.max_wait = max_wait
        #: Descriptor number from which new connections are refused.
        self.ceiling = connection_ceiling() if ceiling is None else ceiling
        #: Connections refused at the ceiling.
        self.refused = 0
        self._refusals = Every()
        #: Armed while connections wait: admits those that waited ``max_wait``.
        self._overdue: asyncio.TimerHandle | None = None
        #: Connections admitted and not yet settled.
        self.active = 0
        self._queue: deque[HeldConnection] = deque()
        #: The place of each admitted connection, by its peer address (what a stream knows).
        self._by_peer: dict[Hashable, _Place] = {}

    @property
    def waiting(self) -> int:
        """Connections accepted and waiting for a place (some may have gone away meanwhile)."""
        return len(self._queue)

    def protocol(self, factory: ConnectionFactory) -> HeldConnection:
        """The protocol for a newly accepted connection: ``factory``'s, once admitted."""
        return HeldConnection(self, factory)

    def settled(self, peer: Hashable) -> None:
        """The connection from ``peer`` is set up: its place goes to the next one waiting.
        Idempotent; a connection that holds no place (settled, timed out) is ignored."""
        place = self._by_peer.get(peer)
        if place is not None:
            place.release()

    def abort_waiting(self) -> None:
        """Abort every connection still waiting (the server is closing)."""
        if self._overdue is not None:
            self._overdue.cancel()
            self._overdue = None
        while self._queue:
            self._queue.popleft().abort()

    def _refuse(self, connection: HeldConnection, descriptor: int) -> None:
        self.refused += 1
        connection.abort()
        count = self._refusals.due()
        if count:
            log.warning(
                "refusing dp connections: descriptor %d reached the ceiling %d (open files "
                "limit less a reserve for the store and API); raise the limit (systemd: "
                "LimitNOFILE) [%d refused]",
                descriptor,
                self.ceiling,
                count,
            )

    def _enter(self, connection: HeldConnection) -> None:
        if self.active < self.limit:
            self._admit(connection)
            return
        loop = asyncio.get_running_loop()
        connection.entered = loop.time()
        self._queue.append(connection)
        if self._overdue is None:
            self._overdue = loop.call_later(self.max_wait, self._admit_overdue)

    def _admit_overdue(self) -> None:
        """Admit, beyond the limit, the connections that waited ``max_wait`` (the queue is in
        arrival order: they are at its front)."""
        self._overdue = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        queue = self._queue
        while queue and now - queue[0].entered >= self.max_wait:
            connection = queue.popleft()
            if not connection.lost and not connection.abandoned():
                self._admit(connection)
        if queue:
            delay = queue[0].entered + self.max_wait - now
            self._overdue = loop.call_later(delay, self._admit_overdue)

    def _admit(self, connection: HeldConnection) -> None:
        self.active += 1
        place = _Place(self, connection.peer)
        if connection.peer is not None:
            # A peer address is unique among open connections; a stale entry of a connection
            # that is gone is replaced.
            self._by_peer[connection.peer] = place
        place.timer = asyncio.get_running_loop().call_later(self.hold, place.release)
        connection.admitted(place.release)

    def _released(self, place: _Place) -> None:
        if self._by_peer.get(place.peer) is place:
            del self._by_peer[place.peer]
        self.active -= 1
        queue = self._queue
        while queue and self.active < self.limit:
            connection = queue.popleft()
            if not connection.lost and not connection.abandoned():
                self._admit(connection)


class _Place:
    __slots__ = ("_admission", "peer", "released", "timer")

    def __init__(self, admission: Admission, peer: Hashable) -> None:
        self._admission = admission
        self.peer = peer
        self.released = False
        self.timer: asyncio.TimerHandle | None = None

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._admission._released(self)


class HeldConnection(asyncio.Protocol):
    """A new connection until admitted: reading paused; then handed for good to the protocol
    its factory builds (``transport.set_protocol``, as the port demultiplexer does), which
    gets ``connection_made`` as if it had accepted the connection itself."""

    __slots__ = ("_admission", "_factory", "_transport", "entered", "lost", "peer")

    def __init__(self, admission: Admission, factory: ConnectionFactory) -> None:
        self._admission = admission
        self._factory = factory
        self._transport: asyncio.Transport | None = None
        self.peer: Hashable = None
        self.lost = False
        #: When it began to wait (the loop's clock), if it had to.
        self.entered = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = tuple(peer) if isinstance(peer, list) else peer
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.fileno() >= self._admission.ceiling:
            self._admission._refuse(self, sock.fileno())
            return
        # Paused before the loop first watches the socket: nothing is read until admitted.
        transport.pause_reading()
        self._admission._enter(self)

    def admitted(self, release: Callable[[], None]) -> None:
        transport = self._transport
        assert transport is not None
        protocol = self._factory(release)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        transport.resume_reading()

    def abandoned(self) -> bool:
        """The client has closed (or reset) the connection while it was held: aborted here,
        unread. Its bytes wait unread in the socket, so only the socket's state can tell."""
        transport = self._transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            return False
        _poll.register(sock.fileno(), _CLOSED)
        try:
            closed = bool(_poll.poll(0))
        finally:
            _poll.unregister(sock.fileno())
        if closed:
            self.lost = True
            assert transport is not None
            transport.abort()
        return closed

    def data_received(self, data: bytes) -> None:  # pragma: no cover - reading is paused
        raise AssertionError("a held connection is not read")

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        # Only while held (once admitted the connection is another protocol's): its turn, when
        # it comes, is skipped.
        self.lost = True

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
