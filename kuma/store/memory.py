"""The memory store: the whole state in one process. The default for tests and for trying out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from kuma.resources import Resource, ResourceKey, ResourceMeta, StoredResource
from kuma.resources.validation import check

from .errors import AlreadyExistsError, ConflictError, NotFoundError, StoreConfigError
from .hub import WatchHub
from .index import ResourceIndex
from .protocol import Operation, Problem, ResourceEvent, ResourcePage, WatchItem


class MemoryStore:
    """A Store held in a dict. Versions are the store's revision at the time of the write."""

    name = "memory"

    def __init__(self) -> None:
        self._index = ResourceIndex()
        self._hub = WatchHub()
        self._revision = 0

    async def get(self, key: ResourceKey) -> StoredResource:
        stored = self._index.get(key)
        if stored is None:
            raise NotFoundError(key)
        return stored

    async def list(
        self,
        type: str,
        mesh: str | None = None,
        *,
        limit: int | None = None,
        offset: str | None = None,
    ) -> ResourcePage:
        return self._index.page(type, mesh, limit, offset)

    async def create(self, resource: Resource) -> StoredResource:
        check(resource)
        key = ResourceKey.of(resource)
        if self._index.get(key) is not None:
            raise AlreadyExistsError(key)
        now = datetime.now(UTC)
        return self._commit(Operation.CREATE, resource, now, now)

    async def update(self, resource: Resource, *, version: str) -> StoredResource:
        check(resource)
        key = ResourceKey.of(resource)
        current = self._index.get(key)
        if current is None:
            raise NotFoundError(key)
        if current.meta.version != version:
            raise ConflictError(key, f"version {version} is stale (current {current.meta.version})")
        return self._commit(
            Operation.UPDATE, resource, current.meta.creation_time, datetime.now(UTC)
        )

    async def delete(self, key: ResourceKey, *, version: str | None = None) -> None:
        current = self._index.get(key)
        if current is None:
            raise NotFoundError(key)
        if version is not None and current.meta.version != version:
            raise ConflictError(key, f"version {version} is stale (current {current.meta.version})")
        self._index.pop(key)
        self._revision += 1
        self._hub.publish(
            ResourceEvent(Operation.DELETE, current.resource, current.meta, self._revision)
        )

    def watch(self) -> AbstractAsyncContextManager[AsyncIterator[WatchItem]]:
        return self._hub.watch(self._snapshot)

    def problems(self) -> Sequence[Problem]:
        return ()

    def _snapshot(self) -> tuple[Iterable[StoredResource], int]:
        return list(self._index), self._revision

    def _commit(
        self, operation: Operation, resource: Resource, created: datetime, modified: datetime
    ) -> StoredResource:
        self._revision += 1
        meta = ResourceMeta(str(self._revision), created, modified)
        stored = StoredResource(resource, meta)
        self._index.put(stored)
        self._hub.publish(ResourceEvent(operation, resource, meta, self._revision))
        return stored

    def close(self) -> None:
        self._hub.close()


@asynccontextmanager
async def open_memory_store(config: Mapping[str, Any] | None = None) -> AsyncIterator[MemoryStore]:
    """Entry point ``memory`` of the ``kuma.stores`` group. Takes no options."""
    unknown = sorted(set(config or {}))
    if unknown:
        raise StoreConfigError(f"store.memory: unknown option(s) {', '.join(unknown)}")
    store = MemoryStore()
    try:
        yield store
    finally:
        store.close()
