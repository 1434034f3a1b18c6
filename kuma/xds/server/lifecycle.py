"""The hook through which a stream's proxy is admitted (and registered) before it is served.

Unlike a :class:`~.observer.StreamObserver`, which only watches, a lifecycle takes part:
``stream_opening`` runs (awaited) after the first request named a valid node and before the
stream reads any configuration; raising :class:`~.node.InvalidRequest` ends the stream with
INVALID_ARGUMENT and that message, and a ``grpclib.exceptions.GRPCError`` ends it with its own
status. ``stream_closed`` is called once for every ``stream_opening`` that returned, when that
stream ends for whatever reason.
"""

from __future__ import annotations

from typing import Any, Protocol


class StreamLifecycle(Protocol):
    async def stream_opening(self, stream_id: int, node_id: str, node: Any) -> None:
        """``node`` is the ``envoy.config.core.v3.Node`` of the stream's first request."""
        ...

    def stream_closed(self, stream_id: int, node_id: str) -> None: ...
