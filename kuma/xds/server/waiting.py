"""Streams whose proxy has no Dataplane (yet): counted, logged once per node, bounded per
connection.

Kuma lets such a stream wait for its Dataplane (a sidecar may start before its Dataplane is
applied), and so does this server. Waiting must not be silent or free, though: the first
stream of a node that starts waiting is logged at info (the next ones of that node while one
waits are not), the number of waiting streams is reported to the observer (a gauge), and one
connection may hold at most ``per_connection`` waiting streams: a client opening thousands of
streams for made-up nodes over one connection gets RESOURCE_EXHAUSTED beyond that. A real Envoy
holds one ADS stream per connection.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

from grpclib.const import Status
from grpclib.exceptions import GRPCError

log = logging.getLogger(__name__)

#: Waiting streams one connection may hold (Envoy opens one ADS stream per connection).
MAX_WAITING_PER_CONNECTION = 16


@runtime_checkable
class WaitingObserver(Protocol):
    """An optional extra hook of a stream observer: the number of waiting streams changed."""

    def on_waiting_streams(self, count: int) -> None: ...


class WaitTicket:
    """One stream's place among the waiting ones; :meth:`release` when its proxy is known."""

    __slots__ = ("_connection", "_node_id", "_owner")

    def __init__(self, owner: WaitingStreams, connection: Hashable, node_id: str) -> None:
        self._owner: WaitingStreams | None = owner
        self._connection = connection
        self._node_id = node_id

    def release(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._leave(self._connection, self._node_id)


class WaitingStreams:
    def __init__(
        self,
        observer: WaitingObserver | None = None,
        *,
        per_connection: int = MAX_WAITING_PER_CONNECTION,
    ) -> None:
        self._observer = observer
        self._per_connection = per_connection
        self._by_connection: dict[Hashable, int] = {}
        self._by_node: dict[str, int] = {}
        self.count = 0

    @contextmanager
    def hold(self, connection: Hashable, node_id: str, flavour: str) -> Iterator[WaitTicket]:
        """A ticket for a stream about to wait; released at the latest when the block ends.

        Raises ``GRPCError(RESOURCE_EXHAUSTED)`` when ``connection`` holds too many already.
        """
        held = self._by_connection.get(connection, 0)
        if held >= self._per_connection:
            log.debug("refusing a waiting stream of %s: its connection holds %d", node_id, held)
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"this connection already holds {held} ADS streams waiting for Dataplanes that "
                f"do not exist (the limit is {self._per_connection}); {node_id!r} is not known",
            )
        self._by_connection[connection] = held + 1
        waiting = self._by_node.get(node_id, 0)
        self._by_node[node_id] = waiting + 1
        if not waiting:
            log.info(
                "%s ADS stream of %s waits: no Dataplane %r exists in mesh %r yet (logged once "
                "per node while it waits)",
                flavour,
                node_id,
                node_id.partition(".")[2],
                node_id.partition(".")[0],
            )
        self._changed(+1)
        ticket = WaitTicket(self, connection, node_id)
        try:
            yield ticket
        finally:
            ticket.release()

    def _leave(self, connection: Hashable, node_id: str) -> None:
        _decrement(self._by_connection, connection)
        _decrement(self._by_node, node_id)
        self._changed(-1)

    def _changed(self, delta: int) -> None:
        self.count += delta
        if self._observer is not None:
            self._observer.on_waiting_streams(self.count)


def _decrement(counts: dict[Any, int], key: Hashable) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]
