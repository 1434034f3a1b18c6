"""One ADS stream: read the node, follow the proxy's watch, run a receive loop and a send loop.

The protocol itself lives in the pure state machines (:mod:`.delta`, :mod:`.sotw`); this module
only moves messages. The two loops are two tasks (:meth:`_Session.run`):

* the receive loop applies every request to the state machine (ACK/NACK accounting and
  subscriptions) and, when a request created work, pokes the watch the send loop waits on;
* the send loop waits for the proxy to be known, then alternates between waiting (for the
  engine's change notice or the receive loop's poke: one wake-up path) and sending one wake-up's
  responses, awaiting the transport for each. A slow proxy only slows its own send loop: the
  engine never waits for it, and changes pile up in the watch as a coalescing set of names.

A stream is authenticated (:mod:`.authn`) before anything is registered or sent, and ends
with UNAUTHENTICATED when refused or when its grant ends (token expired or revoked).

A bad request (no node id, a malformed one, a missing type, undecodable bytes) ends this stream
with INVALID_ARGUMENT; nothing else is affected. A type this server does not serve is not bad:
Envoy may subscribe to any type, so such requests are answered with nothing (and logged once
per stream) while the stream goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NoReturn, Protocol, cast

from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from kuma.xds.proxy_metadata import proxy_metadata
from kuma.xds.source import Changes, ConfigSource, ProxyWatch
from kuma.xds.types import SHORT_NAMES

from .acks import KNOWN_TYPES, Reply
from .authn import FOREVER, StreamAuthenticator, StreamGrant, Unauthenticated
from .delta import Desired
from .direct_receive import receive_message
from .direct_send import send_now
from .lifecycle import StreamLifecycle
from .node import (
    InvalidNodeId,
    InvalidRequest,
    envoy_version,
    first_node_id,
    node_version,
    parse_proxy_id,
)
from .observer import (
    Flavour,
    PropagationObserver,
    StaleReplyObserver,
    StreamObserver,
    VersionObserver,
    has_hook,
)
from .request_headers import release_request_headers
from .service import ServerStream
from .waiting import WaitingStreams, WaitTicket
from .wire import WireResponse

log = logging.getLogger(__name__)

#: How many names of a NACKed response the log line shows.
_NAMES_LOGGED = 10


class ProtocolState(Protocol):
    """What both :class:`~.delta.DeltaProtocol` and :class:`~.sotw.SotwProtocol` offer."""

    @property
    def has_work(self) -> bool: ...

    def handle_request(self, request: Any) -> Reply | None: ...

    def resources_changed(self, changes: Mapping[str, Iterable[str]]) -> None: ...

    def build_responses(self, desired: Desired) -> list[Any]: ...


async def run_stream(
    stream: ServerStream,
    state: ProtocolState,
    *,
    flavour: Flavour,
    source: ConfigSource,
    observer: StreamObserver,
    stream_id: int,
    lifecycle: StreamLifecycle | None = None,
    waiting: WaitingStreams | None = None,
    authenticator: StreamAuthenticator | None = None,
    settled: Callable[[ServerStream], None] | None = None,
) -> None:
    """Serve one ADS stream until the client ends it, breaks the protocol, or is cancelled.
    ``settled`` hears when the proxy's configuration is assembled (.admission)."""
    try:
        first = await _receive(stream)
        if first is None:
            return
        node_id = first_node_id(first.node)
        try:
            parse_proxy_id(node_id)
        except InvalidNodeId as error:
            raise InvalidRequest(f"node.id: {error}") from None
    except InvalidRequest as error:
        _reject(flavour, stream_id, error)
    # Before anything is registered or sent: a refused stream leaves no trace but the
    # authenticator's log line and metric.
    grant = await _authenticate(authenticator, node_id, first.node, stream)
    # The token and the other headers are not read again: ~2-3 KB of every connected proxy.
    release_request_headers(stream)
    try:
        try:
            types = _TypeFilter(flavour, node_id)
            reply = state.handle_request(first) if types.served(first) else None
            if lifecycle is not None:
                await lifecycle.stream_opening(stream_id, node_id, first.node)
        except InvalidRequest as error:
            _reject(flavour, stream_id, error)
        observer.on_stream_open(stream_id, node_id, flavour, envoy_version(first.node))
        try:
            if has_hook(observer, VersionObserver):
                versions = cast(VersionObserver, observer)
                versions.on_stream_version(stream_id, node_version(first.node))
            # Envoy's first request carries its whole node (61 KB for Envoy 1.40: every
            # extension listed); kept alive for the stream's lifetime it tripled the memory of
            # a connection.
            metadata = proxy_metadata(first.node)
            del first
            async with source.watch_proxy(node_id, metadata) as watch:
                if settled is not None:
                    settled(stream)
                with _wait_ticket(waiting, stream, node_id, flavour, known=watch.known) as ticket:
                    session = _Session(stream, state, watch, observer, node_id, types, ticket)
                    if reply is not None:
                        session.observe(reply)
                    await session.run(grant)
            if session.revoked is not None:
                # The proxy keeps the configuration it holds and reconnects with a new token.
                raise GRPCError(Status.UNAUTHENTICATED, session.revoked)
            if session.error is not None:
                log.warning("ending %s ADS stream of %s: %s", flavour, node_id, session.error)
                raise GRPCError(Status.INVALID_ARGUMENT, str(session.error))
        finally:
            observer.on_stream_close(stream_id, node_id)
            if lifecycle is not None:
                lifecycle.stream_closed(stream_id, node_id)
    finally:
        grant.release()


def _reject(flavour: Flavour, stream_id: int, error: InvalidRequest) -> NoReturn:
    log.warning("rejecting %s ADS stream %d: %s", flavour, stream_id, error)
    raise GRPCError(Status.INVALID_ARGUMENT, str(error)) from None


async def _authenticate(
    authenticator: StreamAuthenticator | None, node_id: str, node: Any, stream: ServerStream
) -> StreamGrant:
    if authenticator is None:
        return FOREVER
    try:
        return await authenticator.authenticate(node_id, node, stream.metadata or {})
    except Unauthenticated as refused:
        raise GRPCError(Status.UNAUTHENTICATED, refused.reason) from None


def _wait_ticket(
    waiting: WaitingStreams | None,
    stream: ServerStream,
    node_id: str,
    flavour: Flavour,
    *,
    known: bool,
) -> AbstractContextManager[WaitTicket | None]:
    """A place among the streams waiting for their Dataplane, if this one has to wait."""
    if waiting is None or known:
        return nullcontext(None)
    # The peer's address tells connections apart (one TCP connection, many HTTP/2 streams).
    connection: Hashable = stream.peer.addr()
    return waiting.hold(connection, node_id, flavour)


def _is_known(watch: ProxyWatch) -> bool:
    """``watch.known`` read afresh (a Dataplane can be deleted while its proxy is served)."""
    return watch.known


class _TypeFilter:
    """Lets through requests of the types this server serves (and those without a type, for
    the state machines to refuse); logs the first other one of the stream at info, the rest
    at debug, so a proxy asking for a type it will never get costs one line per stream."""

    __slots__ = ("_flavour", "_logged", "_node_id")

    def __init__(self, flavour: Flavour, node_id: str) -> None:
        self._flavour = flavour
        self._node_id = node_id
        self._logged = False

    def served(self, request: Any) -> bool:
        type_url: str = request.type_url
        if not type_url or type_url in KNOWN_TYPES:
            return True
        level = logging.DEBUG if self._logged else logging.INFO
        self._logged = True
        log.log(
            level,
            "unknown type %s requested on the %s ADS stream of %s: answered with nothing "
            "(logged once per stream)",
            type_url[:200],
            self._flavour,
            self._node_id,
        )
        return False


async def _receive(stream: ServerStream) -> Any:
    try:
        return await receive_message(stream)
    except DecodeError as error:
        raise InvalidRequest(f"undecodable request: {error}") from None


class _Session:
    __slots__ = (
        "_node_id",
        "_observer",
        "_propagation",
        "_stale",
        "_state",
        "_stream",
        "_ticket",
        "_types",
        "_watch",
        "error",
        "revoked",
    )

    def __init__(
        self,
        stream: ServerStream,
        state: ProtocolState,
        watch: ProxyWatch,
        observer: StreamObserver,
        node_id: str,
        types: _TypeFilter,
        ticket: WaitTicket | None = None,
    ) -> None:
        self._ticket = ticket
        self._stream = stream
        self._types = types
        self._state = state
        self._watch = watch
        self._observer = observer
        self._stale = (
            cast(StaleReplyObserver, observer) if has_hook(observer, StaleReplyObserver) else None
        )
        self._propagation = (
            cast(PropagationObserver, observer) if has_hook(observer, PropagationObserver) else None
        )
        self._node_id = node_id
        self.error: InvalidRequest | None = None
        #: Why the stream's grant ended (token expired or revoked), if it did.
        self.revoked: str | None = None

    async def run(self, grant: StreamGrant) -> None:
        """Receive in the stream's own task and send in one more: when the client is done (or
        breaks the protocol) the send loop is cancelled; when the send loop fails, the
        receive is interrupted and its error raised here; when the grant ends, both stop.

        Two plain asyncio tasks, not an anyio task group: a task group, its cancel scopes and
        anyio's per-task handle cost ~4 KB and ~55 µs of setup and teardown per connected
        proxy (benchmarks/RESULTS.md), for the one structure written out below.
        """
        receiving = asyncio.current_task()
        assert receiving is not None
        sending = asyncio.get_running_loop().create_task(self._send_loop())
        interrupt = _Interrupt(receiving)

        def end_with_grant(reason: str) -> None:
            self.revoked = reason
            sending.cancel()
            interrupt()

        def send_loop_ended(task: asyncio.Task[None]) -> None:
            interrupt()  # it never returns: it failed, or was cancelled with the stream

        # Callbacks, not a task waiting for the grant: one task and one event less per
        # connected proxy (``on_end`` calls back at once if the grant has already ended).
        sending.add_done_callback(send_loop_ended)
        grant.on_end(end_with_grant)
        try:
            await self._receive_loop()
        except asyncio.CancelledError:
            if not interrupt.absorbed():
                raise  # cancelled from outside: the connection went, or kuma-cp stops
        finally:
            interrupt.close()  # a grant ending from now on must not cancel the wait below
            sending.remove_done_callback(send_loop_ended)
            sending.cancel()
            # The watch and the state machine are closed after this returns: the send loop
            # must be over by then.
            await asyncio.wait((sending,))
        if not sending.cancelled() and (error := sending.exception()) is not None:
            raise error

    async def _receive_loop(self) -> None:
        try:
            while (request := await _receive(self._stream)) is not None:
                self._handle(request)
        except InvalidRequest as error:
            self.error = error
        # The client closed its side, or broke the protocol: either way the stream is over.

    def _handle(self, request: Any) -> None:
        if not self._types.served(request):
            return
        state = self._state
        reply = state.handle_request(request)
        if reply is not None:
            self.observe(reply)
        if state.has_work:
            self._watch.poke()  # wakes the send loop if it waits, else its next wait is short

    def observe(self, reply: Reply) -> None:
        if reply.stale:
            # Forged, repeated or too old: logging each at warning would let any client write
            # the log; counting it as an ACK or NACK would let it write the insights.
            log.debug(
                "ignoring a reply of %s for %s to nonce %r, which this stream did not send "
                "or was already answered",
                self._node_id,
                SHORT_NAMES.get(reply.type_url, reply.type_url),
                reply.nonce[:64],
            )
            if self._stale is not None:
                self._stale.on_stale_reply(self._node_id, reply.type_url, reply.nonce)
            return
        if reply.error is None:
            self._observer.on_ack(self._node_id, reply.type_url, reply.nonce)
            return
        names = reply.names
        shown = ", ".join(names[:_NAMES_LOGGED])
        if len(names) > _NAMES_LOGGED:
            shown += f" and {len(names) - _NAMES_LOGGED} more"
        log.warning(
            "NACK from %s for %s (nonce %s) of [%s]: %s",
            self._node_id,
            SHORT_NAMES.get(reply.type_url, reply.type_url),
            reply.nonce,
            shown,
            reply.error,
        )
        self._observer.on_nack(self._node_id, reply.type_url, reply.nonce, reply.error)

    async def _send_loop(self) -> None:
        watch = self._watch
        state = self._state
        #: When the oldest change taken but not yet followed by a response reached the control
        #: plane (it travels with the change notice: ``Changes.since``).
        pending_since: float | None = None
        # Until its Dataplane exists the proxy waits (it does not fail): requests still
        # accumulate subscriptions, and nothing is sent.
        while not watch.known:
            await watch.wait_for_changes()
            pending_since = _oldest(pending_since, watch.take_changes())
        if self._ticket is not None:
            self._ticket.release()
        # Whatever changed so far is irrelevant: every type is read in full on its first build.
        pending_since = _oldest(pending_since, watch.take_changes())
        held = False
        while True:
            changes = watch.take_changes()
            if changes:
                state.resources_changed(changes)
                pending_since = _oldest(pending_since, changes)
            if not _is_known(watch):
                # Its Dataplane was deleted while it is connected: as in Kuma, nothing is
                # regenerated and the proxy keeps its last configuration (its traffic goes on).
                # What changed stays marked, to be sent once the Dataplane is back.
                if not held:
                    log.info(
                        "the Dataplane of %s was deleted while it is connected: keeping its last "
                        "configuration until it is back",
                        self._node_id,
                    )
                held = True
            else:
                held = False
                if state.has_work:
                    responses = state.build_responses(watch.resources)
                    pending_since = await self._send(responses, pending_since)
                    continue
            # Nothing of the last responses may stay referenced from here: an idle stream
            # waits for as long as nothing changes, and a response holds a copy of every
            # resource it carried (10 KB per proxy at 1,000 idle sidecars).
            await watch.wait_for_changes()

    async def _send(self, responses: list[Any], since: float | None) -> float | None:
        """Send ``responses`` in order, emptying the list as they go; the change pending since
        ``since`` counts as delivered with the first. Returns what is still pending (``since``
        when there was nothing to send). Each response is dropped once sent: an idle stream
        keeps none."""
        while responses:
            response = responses.pop(0)
            # Written at once in the common case (window open, transport not paused): grpclib's
            # five awaits per response are the largest Python share of a fan-out's send.
            if not send_now(self._stream, response):
                await self._stream.send_message(response)
            self._observer.on_response(
                self._node_id, response.type_url, _resource_count(response), response.nonce
            )
            if since is not None:
                if self._propagation is not None:
                    self._propagation.on_change_delivered(self._node_id, since)
                since = None
        return since


class _Interrupt:
    """Cancels the receiving task once, and later tells whether a ``CancelledError`` it
    caught was this interruption alone (so the stream ends normally) or also came from
    outside (so it goes on up)."""

    __slots__ = ("_interrupted", "_task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task
        self._interrupted = False

    def __call__(self) -> None:
        if not self._interrupted:
            self._interrupted = True
            self._task.cancel()

    def absorbed(self) -> bool:
        return self._interrupted and self._task.uncancel() == 0

    def close(self) -> None:
        self._interrupted = True


def _resource_count(response: Any) -> int:
    if type(response) is WireResponse:
        return response.resource_count
    return len(response.resources)


def _oldest(since: float | None, changes: Mapping[str, Iterable[str]]) -> float | None:
    """The older of ``since`` and the arrival time ``changes`` carry (``Changes.since``)."""
    taken = changes.since if isinstance(changes, Changes) else None
    if taken is None:
        return since
    return taken if since is None or taken < since else since
