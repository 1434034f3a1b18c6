"""Where SDS secrets come from: a :class:`SecretSource`, its own member of the composite source.

Secrets (a proxy's workload certificate and key, its mesh's CA bundle) are not derived from
store events the way clusters and listeners are: they are issued and rotated on a clock. So
they are not the engine's business: a SecretSource owns :data:`~kuma.xds.types.SECRET`, keeps
each proxy's secrets and marks a proxy's watches changed when they are issued, rotated or
revoked. ``kuma/cp/runtime.py`` routes SECRET to it through
:class:`~kuma.xds.composite.CompositeSource`. Until certificates are built, the source is
:class:`EmptySecretSource`: every proxy has no secrets, and nothing ever changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from .proxy_metadata import ProxyMetadata
from .snapshot import VersionedResource
from .source import ProxyWatch
from .types import SECRET
from .wakeup import Waitable

_NONE: Mapping[str, VersionedResource] = {}
_NO_CHANGES: frozenset[str] = frozenset()


class SecretSource(Protocol):
    """A :class:`~kuma.xds.source.ConfigSource` for SDS secrets (type URL ``SECRET``)."""

    def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> AbstractAsyncContextManager[ProxyWatch]:
        """Follow one proxy's secrets; the watch's ``known`` is not read (the primary source
        says whether the proxy is known)."""
        ...


class SecretWatchBase(Waitable):
    """One stream's watch of one proxy's Secrets, for a source that marks names changed; the
    source's subclass says what the proxy's Secrets are (:meth:`resources`)."""

    # One per stream: no instance dict.
    __slots__ = ("_changes", "_node_id")

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self._node_id = node_id
        # Empty until marked: an empty set per stream costs 216 bytes, and most streams'
        # Secrets change once in a long while (a rotation).
        self._changes: set[str] | frozenset[str] = _NO_CHANGES

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def known(self) -> bool:
        return True  # the primary source says whether the proxy is known

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        raise NotImplementedError

    def take_changes(self) -> dict[str, set[str]]:
        if not self._changes:
            return {}
        changes, self._changes = set(self._changes), _NO_CHANGES
        return {SECRET: changes}

    @property
    def has_changes(self) -> bool:
        return bool(self._changes)

    def mark(self, names: Iterable[str]) -> None:
        """These Secrets changed (or went): wake the stream."""
        self._changes = self._changes.union(names)
        if self._changes:
            self._changed()


class _EmptyWatch(Waitable):
    def __init__(self, node_id: str) -> None:
        super().__init__()
        self._node_id = node_id

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def known(self) -> bool:
        return True

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        return _NONE

    def take_changes(self) -> dict[str, set[str]]:
        return {}

    @property
    def has_changes(self) -> bool:
        return False  # nothing ever changes: only a poke ends its wait


class EmptySecretSource:
    """No secrets for anyone (mTLS is not built yet)."""

    @asynccontextmanager
    async def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> AsyncIterator[ProxyWatch]:
        yield _EmptyWatch(node_id)
