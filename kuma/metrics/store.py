"""A Store that reports every call to :class:`~.metrics.Metrics`: outcome and duration.

Wrapping keeps the stores unaware of metrics. Outcomes: ``ok``; ``not_found``, ``conflict``
and ``invalid`` (a caller's mistake or a lost race: normal answers); ``unavailable`` (the
backing service failed) and ``error`` (anything else) also count as store errors.
Attributes the protocol does not name are passed through to the wrapped store.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any

from kuma.resources import Resource, ResourceError, ResourceKey, StoredResource
from kuma.store import (
    ConflictError,
    NotFoundError,
    Problem,
    ResourcePage,
    Store,
    StoreUnavailableError,
    WatchItem,
)

from .metrics import Metrics


def outcome_of(error: BaseException) -> str:
    if isinstance(error, NotFoundError):
        return "not_found"
    if isinstance(error, ConflictError):
        return "conflict"
    if isinstance(error, ResourceError):
        return "invalid"
    if isinstance(error, StoreUnavailableError):
        return "unavailable"
    return "error"


class InstrumentedStore:
    """``Store`` that times and classifies every call of the wrapped store."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.wrapped = store
        self._metrics = metrics

    @property
    def name(self) -> str:
        return self.wrapped.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    @contextmanager
    def _call(self, operation: str) -> Iterator[None]:
        # Cancellation (a BaseException) is nobody's error: it is not counted at all.
        started = time.perf_counter()
        try:
            yield
        except Exception as error:
            self._metrics.on_store_call(operation, outcome_of(error), time.perf_counter() - started)
            raise
        self._metrics.on_store_call(operation, "ok", time.perf_counter() - started)

    async def get(self, key: ResourceKey) -> StoredResource:
        with self._call("get"):
            return await self.wrapped.get(key)

    async def list(
        self,
        type: str,
        mesh: str | None = None,
        *,
        limit: int | None = None,
        offset: str | None = None,
    ) -> ResourcePage:
        with self._call("list"):
            return await self.wrapped.list(type, mesh, limit=limit, offset=offset)

    async def create(self, resource: Resource) -> StoredResource:
        with self._call("create"):
            return await self.wrapped.create(resource)

    async def update(self, resource: Resource, *, version: str) -> StoredResource:
        with self._call("update"):
            return await self.wrapped.update(resource, version=version)

    async def delete(self, key: ResourceKey, *, version: str | None = None) -> None:
        with self._call("delete"):
            await self.wrapped.delete(key, version=version)

    def watch(self) -> AbstractAsyncContextManager[AsyncIterator[WatchItem]]:
        return self.wrapped.watch()

    def problems(self) -> Sequence[Problem]:
        return self.wrapped.problems()
