"""Hooks through which insights and metrics follow the streams without the server knowing them.

Every call is synchronous and made from the stream's own task: an observer must be quick and
must not raise (it would end the stream). ``stream_id`` tells two streams of one proxy apart
(a reconnecting Envoy can open the new stream before the old one is seen closed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

from .waiting import WaitingObserver

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


@runtime_checkable
class VersionObserver(Protocol):
    """An optional extra hook: the proxy's versions, called right after ``on_stream_open``."""

    def on_stream_version(self, stream_id: int, version: Mapping[str, Mapping[str, str]]) -> None:
        """Kuma's ``Version`` of the proxy (see :func:`.node.node_version`)."""
        ...


@runtime_checkable
class StaleReplyObserver(Protocol):
    """An optional extra hook: a request answered a nonce the stream never sent (or one
    already answered); it was counted as neither ACK nor NACK."""

    def on_stale_reply(self, node_id: str, type_url: str, nonce: str) -> None: ...


@runtime_checkable
class PropagationObserver(Protocol):
    """An optional extra hook: a response was written after changes that reached the control
    plane at ``changed_at`` (``time.monotonic``; the oldest of the changes it carries), once per
    batch of changes the stream took (several changes coalescing count once, from the oldest)."""

    def on_change_delivered(self, node_id: str, changed_at: float) -> None: ...


#: (observer class, optional hook) -> whether the class has the hook, decided once per class:
#: an ``isinstance`` on a runtime-checkable Protocol looks up each of its members every time
#: (~5-15 µs), and every stream opening asks three of them of the same observer.
_HAS_HOOK: dict[tuple[type, type], bool] = {}


def has_hook(observer: object, hook: type) -> bool:
    """``isinstance(observer, hook)`` for an optional-hook Protocol (:class:`VersionObserver`,
    :class:`StaleReplyObserver`, :class:`PropagationObserver`), decided once per class (as
    ``composite._as_listenable`` does): observers define their hooks as methods."""
    key = (type(observer), hook)
    known = _HAS_HOOK.get(key)
    if known is None:
        known = _HAS_HOOK[key] = isinstance(observer, hook)
    return known


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


class ObserverGroup:
    """Several observers as one (insights and metrics both follow the streams), in order."""

    def __init__(self, observers: Sequence[StreamObserver]) -> None:
        self._observers = tuple(observers)
        self._versioned = tuple(o for o in observers if isinstance(o, VersionObserver))
        self._stale = tuple(o for o in observers if isinstance(o, StaleReplyObserver))
        self._waiting = tuple(o for o in observers if isinstance(o, WaitingObserver))
        self._propagation = tuple(o for o in observers if isinstance(o, PropagationObserver))

    def on_stream_open(
        self, stream_id: int, node_id: str, protocol: Flavour, envoy_version: str
    ) -> None:
        for observer in self._observers:
            observer.on_stream_open(stream_id, node_id, protocol, envoy_version)

    def on_stream_version(self, stream_id: int, version: Mapping[str, Mapping[str, str]]) -> None:
        for observer in self._versioned:
            observer.on_stream_version(stream_id, version)

    def on_response(self, node_id: str, type_url: str, resource_count: int, nonce: str) -> None:
        for observer in self._observers:
            observer.on_response(node_id, type_url, resource_count, nonce)

    def on_ack(self, node_id: str, type_url: str, nonce: str) -> None:
        for observer in self._observers:
            observer.on_ack(node_id, type_url, nonce)

    def on_nack(self, node_id: str, type_url: str, nonce: str, message: str) -> None:
        for observer in self._observers:
            observer.on_nack(node_id, type_url, nonce, message)

    def on_waiting_streams(self, count: int) -> None:
        for observer in self._waiting:
            observer.on_waiting_streams(count)

    def on_stale_reply(self, node_id: str, type_url: str, nonce: str) -> None:
        for observer in self._stale:
            observer.on_stale_reply(node_id, type_url, nonce)

    def on_change_delivered(self, node_id: str, changed_at: float) -> None:
        for observer in self._propagation:
            observer.on_change_delivered(node_id, changed_at)

    def on_stream_close(self, stream_id: int, node_id: str) -> None:
        for observer in self._observers:
            observer.on_stream_close(stream_id, node_id)
