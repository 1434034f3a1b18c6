"""Content interning: one VersionedResource object per distinct content, shared by all proxies.

Many proxies hold byte-identical resources (the same outbound listener on 127.0.0.1:10001, the
same redirect listeners, the same admin cluster). Interning by version (a hash of the bytes)
keeps one copy; entries vanish by themselves when no proxy holds them any more (weak values).
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable

from google.protobuf.message import Message

from kuma.xds.snapshot import VersionedResource, versioned


class Interner:
    def __init__(self) -> None:
        self._by_version: weakref.WeakValueDictionary[tuple[str, str, str], VersionedResource] = (
            weakref.WeakValueDictionary()
        )
        self._by_key: weakref.WeakValueDictionary[Hashable, VersionedResource] = (
            weakref.WeakValueDictionary()
        )

    def intern(self, type_url: str, name: str, message: Message) -> VersionedResource:
        """Serialize ``message`` and return the shared object for that content."""
        fresh = versioned(type_url, name, message)
        key = (type_url, name, fresh.version)
        existing = self._by_version.get(key)
        if existing is not None:
            return existing
        self._by_version[key] = fresh
        return fresh

    def cached(self, key: Hashable) -> VersionedResource | None:
        """A resource built earlier from the same inputs (``key`` must capture all of them)."""
        return self._by_key.get(key)

    def remember(self, key: Hashable, resource: VersionedResource) -> VersionedResource:
        self._by_key[key] = resource
        return resource

    def __len__(self) -> int:
        return len(self._by_version)
