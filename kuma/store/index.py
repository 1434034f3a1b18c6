"""An in-memory, ordered collection of stored resources with keyset pagination.

Shared by the stores that hold their whole state in memory (memory, directory). Resources of a
type are kept sorted by (mesh, name) so a page is a slice, and the opaque offset is the last key
of the previous page: pages stay correct when resources are added or removed between calls.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

from sortedcontainers import SortedDict

from kuma.resources import ResourceKey, StoredResource

from .protocol import ResourcePage

DEFAULT_PAGE_SIZE = 100


def encode_offset(mesh: str, name: str) -> str:
    return base64.urlsafe_b64encode(f"{mesh}\x00{name}".encode()).decode().rstrip("=")


def decode_offset(offset: str) -> tuple[str, str]:
    """The (mesh, name) key an offset stands for; ValueError when it is not one of ours."""
    try:
        padded = offset + "=" * (-len(offset) % 4)
        mesh, name = base64.urlsafe_b64decode(padded.encode()).decode().split("\x00")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid offset {offset!r}") from exc
    return mesh, name


class ResourceIndex:
    """Stored resources by type, each type sorted by (mesh, name)."""

    def __init__(self) -> None:
        self._by_type: dict[str, SortedDict[tuple[str, str], StoredResource]] = {}

    def get(self, key: ResourceKey) -> StoredResource | None:
        by_key = self._by_type.get(key.type)
        return None if by_key is None else by_key.get((key.mesh, key.name))

    def put(self, stored: StoredResource) -> StoredResource | None:
        """Insert or replace; returns the previous value."""
        key = stored.key
        by_key = self._by_type.setdefault(key.type, SortedDict())
        previous: StoredResource | None = by_key.get((key.mesh, key.name))
        by_key[(key.mesh, key.name)] = stored
        return previous

    def pop(self, key: ResourceKey) -> StoredResource | None:
        by_key = self._by_type.get(key.type)
        if by_key is None:
            return None
        popped: StoredResource | None = by_key.pop((key.mesh, key.name), None)
        return popped

    def __iter__(self) -> Iterator[StoredResource]:
        for by_key in self._by_type.values():
            yield from by_key.values()

    def __len__(self) -> int:
        return sum(len(by_key) for by_key in self._by_type.values())

    def page(
        self, type: str, mesh: str | None, limit: int | None, offset: str | None
    ) -> ResourcePage:
        by_key = self._by_type.get(type)
        if by_key is None:
            return ResourcePage(items=(), total=0, next_offset=None)
        if mesh is None:
            keys = by_key.irange(
                minimum=decode_offset(offset) if offset else None, inclusive=(False, True)
            )
            total = len(by_key)
        else:
            start = decode_offset(offset) if offset else (mesh, "")
            keys = by_key.irange(
                minimum=start, maximum=(mesh, "\U0010ffff"), inclusive=(offset is None, True)
            )
            total = len(list(by_key.irange(minimum=(mesh, ""), maximum=(mesh, "\U0010ffff"))))
        items: list[StoredResource] = []
        for k in keys:
            if limit is not None and len(items) == limit:
                last = items[-1].key
                return ResourcePage(tuple(items), total, encode_offset(last.mesh, last.name))
            items.append(by_key[k])
        return ResourcePage(items=tuple(items), total=total, next_offset=None)
