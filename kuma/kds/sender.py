"""The side of a KDS stream that offers resources: the delta state machine
(:class:`~kuma.xds.server.delta.DeltaProtocol`, with the KDS kinds as its types) fed by an
:class:`~.outbox.View`. Global runs it on ``GlobalToZoneSync``, a zone on
``ZoneToGlobalSync``: the same loop on either end of a gRPC stream.

The receiver subscribes with a wildcard and declares what it already holds
(``initial_resource_versions``), so after a reconnect only the differences travel.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import anyio

from kuma.xds.server.delta import DeltaProtocol, TypeSet

from . import parts
from .outbox import Outbox

log = logging.getLogger(__name__)


class Pipe(Protocol):
    """Either end of a gRPC stream (grpclib's server and client streams both fit)."""

    async def recv_message(self) -> Any: ...

    async def send_message(self, message: Any) -> None: ...


class Observer(Protocol):
    """Hears a stream's traffic (global's zone insights: kuma/kds/zone_status.py)."""

    def on_request(self, request: Any) -> None: ...

    def on_response(self, response: Any) -> None: ...


class Observers:
    """Several observers of one stream as one (zone status and KDS traffic on global)."""

    def __init__(self, *observers: Observer | None) -> None:
        self._all = [o for o in observers if o is not None]

    def on_request(self, request: Any) -> None:
        for observer in self._all:
            observer.on_request(request)

    def on_response(self, response: Any) -> None:
        for observer in self._all:
            observer.on_response(response)


async def offer(
    pipe: Pipe,
    outbox: Outbox,
    kinds: tuple[str, ...],
    peer: str,
    *,
    zone: str = "",
    observer: Observer | None = None,
    extra: tuple[str, ...] = (),
    max_msg_size: int | None = None,
) -> None:
    """Serve ``outbox``'s resources of ``kinds`` to ``peer`` until it ends the stream;
    ``zone``: the peer zone's name (what the outbox withholds from it stays out); ``extra``:
    type URLs beyond the kinds' (a zone's insights, published to the outbox);
    ``max_msg_size``: no response larger (:mod:`.limits`). Raises
    :class:`~kuma.xds.server.node.InvalidRequest` when the peer breaks the protocol."""
    state = DeltaProtocol(TypeSet((*parts.type_urls(kinds), *extra)), max_msg_size)
    failed: list[Exception] = []
    async with outbox.view(zone) as view, anyio.create_task_group() as tg:

        async def receive() -> None:
            try:
                while (request := await pipe.recv_message()) is not None:
                    if observer is not None:
                        observer.on_request(request)
                    reply = state.handle_request(request)
                    if reply is not None and reply.error is not None and not reply.stale:
                        log.warning(
                            "KDS NACK from %s for %s: %s", peer, reply.type_url, reply.error[:500]
                        )
                    if state.has_work:
                        view.poke()
            except Exception as exc:  # raised below as it is, not as an ExceptionGroup
                failed.append(exc)
            tg.cancel_scope.cancel()

        tg.start_soon(receive)
        while True:
            state.resources_changed(view.take_changes())
            if state.has_work:
                for response in state.build_responses(view.resources):
                    await pipe.send_message(response)
                    if observer is not None:
                        observer.on_response(response)
                continue
            await view.wait_for_changes()
    if failed:
        raise failed[0]
