"""One consumer's watch on the etcd store: a snapshot, Synced, then every change exactly once,
across disconnects, compactions and a wiped etcd.

:class:`PrefixFollower` (``follow.py``) keeps the etcd side; :class:`ResourceSink` turns what
it follows into the consumer's events. The sink keeps a mirror of what it has emitted (key ->
stored resource, whose version is the key's mod_revision): a re-listing (after a compaction or
a wiped etcd) emits the differences between the mirror and the listing.

Revisions seen by the consumer. They are etcd's revisions plus an offset that starts at 0, so
normally they are exactly etcd's. The offset only grows, when two events would otherwise not
get strictly increasing revisions: the differences of a re-list all happen "at" the listing's
revision, several keys written by one etcd transaction share a revision, and a wiped etcd
counts from 1 again. Each such event gets the previous revision + 1 and the offset keeps later
events above it. So revisions strictly increase along a watch; they equal etcd's until the first
re-list or multi-key transaction, and stay etcd's revision + a constant between such moments.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import anyio
from aetcd import rpc
from anyio.abc import TaskStatus

from kuma.resources import StoredResource
from kuma.store import Operation, ResourceEvent, Synced, WatchItem

from .follow import EtcdConnection, PrefixFollower
from .problems import ResourceDecoder

log = logging.getLogger(__name__)


class ResourceSink:
    """A :class:`~.follow.WatchSink`: decoded resources out as the consumer's events."""

    def __init__(self, decoder: ResourceDecoder, where: str) -> None:
        self._decoder = decoder
        self._where = where
        self.send, self.receive = anyio.create_memory_object_stream[WatchItem](math.inf)
        #: What the consumer holds: the last state emitted per etcd key.
        self._mirror: dict[bytes, StoredResource] = {}
        self._synced = False
        self._offset = 0
        self._last = 0

    async def relist(self, kvs: Sequence[Any], revision: int) -> None:
        """Emit what differs from the mirror (the first time: the snapshot and Synced)."""
        fresh = await self._decoder.decode_all(kvs)
        self._decoder.book.retain({raw.key for raw in kvs})
        if not self._synced:
            consumer_revision = self._revision(revision)
            for stored in fresh.values():
                self.send.send_nowait(
                    ResourceEvent(Operation.CREATE, stored.resource, stored.meta, consumer_revision)
                )
            self.send.send_nowait(Synced(consumer_revision))
            self._synced = True
        else:
            self._emit_differences(fresh, revision)
        self._mirror = fresh

    def apply(self, event: Any) -> None:
        raw = event.kv
        revision = raw.mod_revision
        key = raw.key
        if event.type == rpc.Event.DELETE:
            self._decoder.book.clear(key)
            self._emit_delete(key, revision)
            return
        stored = self._decoder.decode(raw)
        if stored is None:
            # Now invalid: the store no longer serves it (get and list skip it too).
            self._emit_delete(key, revision)
            return
        operation = Operation.UPDATE if key in self._mirror else Operation.CREATE
        self._mirror[key] = stored
        self._emit(operation, stored, self._revision(revision))

    def _emit_delete(self, key: bytes, revision: int) -> None:
        previous = self._mirror.pop(key, None)
        if previous is not None:
            self._emit(Operation.DELETE, previous, self._revision(revision))

    def _emit(self, operation: Operation, stored: StoredResource, revision: int) -> None:
        self.send.send_nowait(ResourceEvent(operation, stored.resource, stored.meta, revision))

    def _revision(self, etcd_revision: int) -> int:
        """The consumer's revision for an etcd revision (see the module docstring)."""
        revision = etcd_revision + self._offset
        if revision <= self._last:
            revision = self._last + 1
            self._offset = revision - etcd_revision
        self._last = revision
        return revision

    def _emit_differences(self, fresh: dict[bytes, StoredResource], etcd_revision: int) -> None:
        changes = 0
        for key in sorted(self._mirror.keys() | fresh.keys()):
            old, new = self._mirror.get(key), fresh.get(key)
            if old is None and new is not None:
                self._emit(Operation.CREATE, new, self._revision(etcd_revision))
            elif new is None and old is not None:
                self._emit(Operation.DELETE, old, self._revision(etcd_revision))
            elif old is not None and new is not None and old != new:
                # A different version is a change even with the same spec: writers need it.
                self._emit(Operation.UPDATE, new, self._revision(etcd_revision))
            else:
                continue
            changes += 1
        log.info("etcd watch on %s re-listed: %d difference(s)", self._where, changes)


class ResourceWatch:
    """The store's ``watch()``: a follower of the resource prefix feeding a resource sink."""

    def __init__(self, connection: EtcdConnection, decoder: ResourceDecoder) -> None:
        root = decoder.layout.root
        self._sink = ResourceSink(decoder, root.decode(errors="replace"))
        self._follower = PrefixFollower(connection, root, self._sink)
        self.receive = self._sink.receive

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._follower.run(task_status=task_status)
        finally:
            self._sink.send.close()

    async def stop(self) -> None:
        """Stop following etcd (cancelling the server-side watcher) and end the stream (also
        when ``run`` never got to start)."""
        await self._follower.stop()
        self._sink.send.close()
