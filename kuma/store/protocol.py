"""The Store protocol: the one small interface every store implements.

A store keeps typed resources and produces change events. It validates what is written to it
(nothing invalid is ever stored or served) and never needs to know who consumes its events.

``watch()`` is the contract the engine is built on: it opens a consistent snapshot of the
current state (one ``CREATE`` event per resource), then a single :class:`Synced` marker, then
every later change, in order, each exactly once. A consumer that restarts its watch receives a
fresh snapshot; nothing is lost between the snapshot and the changes that follow it.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import msgspec

from kuma.resources import Resource, ResourceKey, ResourceMeta, StoredResource


class Operation(enum.Enum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


class ResourceEvent(msgspec.Struct, frozen=True):
    """One change. For DELETE, ``resource`` and ``meta`` are the last known state."""

    operation: Operation
    resource: Resource
    meta: ResourceMeta
    #: The store's revision after this change. Snapshot events share the snapshot's revision;
    #: every later event has a strictly greater revision than the one before it.
    revision: int

    @property
    def key(self) -> ResourceKey:
        return ResourceKey.of(self.resource)


class Synced(msgspec.Struct, frozen=True):
    """Marks the end of the initial snapshot of a watch: every event before it was state that
    already existed; the consumer now holds the store's full state as of ``revision``."""

    revision: int


WatchItem = ResourceEvent | Synced


class Problem(msgspec.Struct, frozen=True):
    """Something the store holds but cannot serve: a file that does not parse, an etcd value
    that is not a valid resource. ``where`` names it (a path, a key); ``reason`` says why."""

    where: str
    reason: str


class ResourcePage(msgspec.Struct, frozen=True):
    items: tuple[StoredResource, ...]
    total: int
    #: Opaque offset of the next page, or None on the last page.
    next_offset: str | None


class Store(Protocol):
    """What every store offers. Implementations are async context managers (see ``open``)."""

    @property
    def name(self) -> str:
        """The store's type name (``memory``, ``directory``, ``etcd``, ...)."""
        ...

    async def get(self, key: ResourceKey) -> StoredResource:
        """The resource at ``key``; raises NotFoundError."""
        ...

    async def list(
        self,
        type: str,
        mesh: str | None = None,
        *,
        limit: int | None = None,
        offset: str | None = None,
    ) -> ResourcePage:
        """Resources of ``type`` (in ``mesh`` when given), ordered by (mesh, name)."""
        ...

    async def create(self, resource: Resource) -> StoredResource:
        """Validate and store a new resource; raises AlreadyExistsError, ValidationError."""
        ...

    async def update(self, resource: Resource, *, version: str) -> StoredResource:
        """Replace the resource if its current version is ``version``; raises ConflictError when
        it is not (someone else wrote it), NotFoundError, ValidationError."""
        ...

    async def delete(self, key: ResourceKey, *, version: str | None = None) -> None:
        """Delete; with ``version``, only if it is still current (else ConflictError)."""
        ...

    def watch(self) -> AbstractAsyncContextManager[AsyncIterator[WatchItem]]:
        """Open a watch: snapshot, Synced, then every change. Closing it releases everything
        the watch holds (server-side watchers included)."""
        ...

    def problems(self) -> Sequence[Problem]:
        """What the store currently cannot serve (for the API and metrics)."""
        ...


@runtime_checkable
class NotifiesProblems(Protocol):
    """A store that says when ``problems()`` changed (optional: a file that breaks produces no
    resource event, so without this a reader only sees it on its next look)."""

    def on_problems_changed(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (synchronously, cheaply) after every change of ``problems()``;
        returns the function that stops calling it."""
        ...
