"""The one small interface between the engine and the xDS protocol servers.

The engine owns every proxy's desired state; a stream owns what it has sent. A stream opens a
:class:`ProxyWatch` for its node, reads the desired resources once, and from then on only the
(type, name) pairs the engine marked changed. Changes coalesce in a set while the stream is
busy (latest content wins when it reads), so a slow proxy costs the engine nothing more and its
pending state stays bounded by the size of its config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

from .proxy_metadata import ProxyMetadata
from .snapshot import VersionedResource


class Changes(dict[str, set[str]]):
    """Names changed (or removed) per type URL, and ``since``: when (``time.monotonic``) the
    oldest control-plane input behind them arrived, or None if unknown (the proxy's first
    config, a member that does not stamp its changes). Streams measure propagation from it."""

    __slots__ = ("since",)

    def __init__(self, changes: dict[str, set[str]] | None = None, since: float | None = None):
        super().__init__(changes or {})
        self.since = since


class ProxyWatch(Protocol):
    @property
    def node_id(self) -> str: ...

    @property
    def known(self) -> bool:
        """True once the proxy's Dataplane exists; until then it has no resources."""
        ...

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        """The desired resources of one type, by name (a read-only view: do not keep it)."""
        ...

    def take_changes(self) -> dict[str, set[str]]:
        """The names changed (or removed) per type since the last call, and reset them; a
        :class:`Changes` when the source knows when they arrived."""
        ...

    async def wait_for_changes(self) -> None:
        """Return as soon as ``take_changes`` would return something, ``known`` changed, or
        :meth:`poke` was called (since the last wait returned)."""
        ...

    def poke(self) -> None:
        """End the pending (or the next) ``wait_for_changes``: the stream has work of its own
        (a request subscribed to something). One wake-up path per stream, not two."""
        ...


class ConfigSource(Protocol):
    def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> AbstractAsyncContextManager[ProxyWatch]:
        """Follow one proxy (``<mesh>.<name>``) for as long as the context is open.

        ``metadata``: what the proxy's node said about itself when its stream opened; None for
        a reader that is not the proxy (the served-config page), which sees the proxy as its
        own stream made it."""
        ...


@runtime_checkable
class ListenableWatch(Protocol):
    """Optional for a :class:`ProxyWatch`: lets :class:`~kuma.xds.composite.CompositeSource`
    wait on several watches with one wake-up instead of a task per watch."""

    @property
    def has_changes(self) -> bool:
        """True if ``wait_for_changes`` would return now."""
        ...

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        """Call ``listener`` (no arguments, from the notifying task) after each change."""
        ...
