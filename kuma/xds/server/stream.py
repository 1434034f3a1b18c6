"""One ADS stream: read the node, authenticate, register, open the proxy's watch and hand the
stream to its session (:mod:`.session`: the receive and send loops).

The protocol itself lives in the pure state machines (:mod:`.delta`, :mod:`.sotw`); this module
and the session only move messages.

A stream is authenticated (:mod:`.authn`) before anything is registered or sent, and ends
with UNAUTHENTICATED when refused or when its grant ends (token expired or revoked).

A bad request (no node id, a malformed one, a missing type, undecodable bytes) ends this stream
with INVALID_ARGUMENT; nothing else is affected. A type this server does not serve is not bad:
Envoy may subscribe to any type, so such requests are answered with nothing (and logged once
per stream) while the stream goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NoReturn, cast

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from kuma.xds.proxy_metadata import proxy_metadata
from kuma.xds.source import ConfigSource

from .authn import FOREVER, StreamAuthenticator, StreamGrant, Unauthenticated
from .incoming import TypeFilter, receive_request
from .lifecycle import StreamLifecycle
from .node import (
    InvalidNodeId,
    InvalidRequest,
    envoy_version,
    first_node_id,
    node_version,
    parse_proxy_id,
)
from .observer import Flavour, StreamObserver, VersionObserver, has_hook
from .request_headers import release_request_headers
from .service import ServerStream
from .session import ProtocolState, Session
from .waiting import WaitingStreams, WaitTicket

log = logging.getLogger(__name__)


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
        first = await receive_request(stream)
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
            types = TypeFilter(flavour, node_id)
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
                    session = Session(stream, state, watch, observer, node_id, types, ticket)
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
