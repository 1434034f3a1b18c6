"""Hooks through which insights and metrics follow the streams without the server knowing them.

Every call is synchronous and made from the stream's own task: an observer must be quick and
must not raise (it would end the stream). ``stream_id`` tells two streams of one proxy apart
(a reconnecting Envoy can open the new stream before the old one is seen closed).
"""

from __future__ import annotations

from typing import Literal, Protocol

#: The two ADS flavours: incremental (``DeltaAggregatedResources``) and state of the world.
Flavour = Literal["delta", "sotw"]


class StreamObserver(Protocol):
    def on_stream_open(
        self, stream_id: int, node_id: str, protocol: Flavour, envoy_version: str
    ) -> None:
        """A stream presented a valid node id (the proxy may not be known yet)."""
        ...

    def on_response(self, node_id: str, type_url: str, resource_count: int, nonce: str) -> None:
        """A response was handed to the transport (``resource_count`` excludes removals)."""
        ...

    def on_ack(self, node_id: str, type_url: str, nonce: str) -> None: ...

    def on_nack(self, node_id: str, type_url: str, nonce: str, message: str) -> None: ...

    def on_stream_close(self, stream_id: int, node_id: str) -> None:
        """The stream ended, for whatever reason; called once per ``on_stream_open``."""
        ...


class NoopObserver:
    """The default: observes nothing."""

    def on_stream_open(
        self, stream_id: int, node_id: str, protocol: Flavour, envoy_version: str
    ) -> None:
        pass

    def on_response(self, node_id: str, type_url: str, resource_count: int, nonce: str) -> None:
        pass

    def on_ack(self, node_id: str, type_url: str, nonce: str) -> None:
        pass

    def on_nack(self, node_id: str, type_url: str, nonce: str, message: str) -> None:
        pass

    def on_stream_close(self, stream_id: int, node_id: str) -> None:
        pass
