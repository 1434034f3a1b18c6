"""The etcd store: every read and write goes to etcd, so several kuma-cp instances sharing one
etcd agree on the state and on versions.

Writes are compare-and-swap transactions on the key's revisions: create requires
``create_revision == 0`` (absent), update and delete with a version require
``mod_revision == version``. Versions are mod_revisions, so any writer (another kuma-cp, etcdctl)
invalidates the versions others hold.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aetcd
import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from kuma.resources import RESOURCE_TYPES, Resource, ResourceKey, ResourceMeta, StoredResource
from kuma.resources.validation import check
from kuma.store import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    Problem,
    ResourcePage,
    StoreUnavailableError,
    WatchItem,
)
from kuma.store.index import decode_offset, encode_offset

from . import kv
from .config import EtcdOptions
from .follow import EtcdConnection, PrefixFollower
from .insights import EtcdInsightStore
from .instances import EtcdInstances
from .layout import InvalidEntry, KeyLayout, decode_value, encode_value
from .problems import ProblemBook, ResourceDecoder
from .watch import ResourceWatch

log = logging.getLogger(__name__)

#: etcd refuses transactions of more than 128 operations (``--max-txn-ops``).
_MAX_TXN_OPS = 128


class EtcdStore:
    name = "etcd"

    def __init__(self, client: aetcd.Client, options: EtcdOptions, task_group: TaskGroup) -> None:
        self.options = options
        self.client = client
        self.layout = KeyLayout(options.prefix)
        self.kv = kv.KV(client, options.request_timeout)
        self._task_group = task_group
        self._book = ProblemBook()
        self._decoder = ResourceDecoder(self.layout, self._book)
        #: What the watches need of the connection (they start their gRPC streams one at a
        #: time: see ``PrefixFollower._follow``).
        self._connection = EtcdConnection(client, self.kv, options, anyio.Lock())
        self._watches: set[ResourceWatch | PrefixFollower] = set()
        self._insights: EtcdInsightStore | None = None
        self._closed = False

    # --- problems: values under the prefix that are not valid resources -----------------------

    def problems(self) -> Sequence[Problem]:
        return self._book.problems()

    def on_problems_changed(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._book.on_change(callback)

    # --- reads ---------------------------------------------------------------------------------

    async def get(self, key: ResourceKey) -> StoredResource:
        self._check_open()
        response = await self.kv.range(self.layout.key(key))
        stored = self._decoder.decode(response.kvs[0]) if response.kvs else None
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
        """Ordered by (mesh, name), which is not etcd's key order (``a-b/x`` sorts before
        ``a/x``), so the keys of the type are read (keys only) and sorted here; then only the
        page's values are fetched. ``total`` counts keys, invalid values included."""
        self._check_open()
        after = decode_offset(offset) if offset else None
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        if type not in RESOURCE_TYPES:
            return ResourcePage(items=(), total=0, next_offset=None)
        prefix = self.layout.range_prefix(type, mesh)
        if limit is None:
            scan = await self.kv.scan(prefix, page_size=self.options.page_size)
            decoded = (await self._decoder.decode_all(scan.kvs)).values()
            # A mesh filter on a global type matches nothing (as in the memory store).
            items = [s for s in decoded if mesh is None or s.key.mesh == mesh]
            items.sort(key=lambda s: (s.key.mesh, s.key.name))
            total = len(items)
            if after is not None:
                items = [s for s in items if (s.key.mesh, s.key.name) > after]
            return ResourcePage(tuple(items), total, None)
        scan = await self.kv.scan(prefix, page_size=self.options.page_size * 10, keys_only=True)
        keys = sorted(self._parsed_keys(scan.kvs, mesh))
        remaining = [k for k in keys if after is None or (k.mesh, k.name) > after]
        page, more = remaining[:limit], len(remaining) > limit
        items = await self._fetch(page)
        next_offset = encode_offset(page[-1].mesh, page[-1].name) if more else None
        return ResourcePage(tuple(items), len(keys), next_offset)

    def _parsed_keys(self, kvs: Sequence[Any], mesh: str | None) -> builtins.list[ResourceKey]:
        keys: builtins.list[ResourceKey] = []
        for raw in kvs:
            try:
                key = self.layout.parse(raw.key)
            except InvalidEntry as exc:
                self._book.report(raw.key, exc.reason)
                continue
            if mesh is None or key.mesh == mesh:
                keys.append(key)
        return keys

    async def _fetch(self, keys: Sequence[ResourceKey]) -> builtins.list[StoredResource]:
        """The current values of ``keys``, in order, a transaction of range reads at a time;
        keys deleted since they were listed are left out."""
        items: builtins.list[StoredResource] = []
        for start in range(0, len(keys), _MAX_TXN_OPS):
            batch = keys[start : start + _MAX_TXN_OPS]
            response = await self.kv.txn([], [kv.get(self.layout.key(k)) for k in batch], [])
            for op in response.responses:
                for raw in op.response_range.kvs:
                    stored = self._decoder.decode(raw)
                    if stored is not None:
                        items.append(stored)
        return items

    # --- writes --------------------------------------------------------------------------------

    async def create(self, resource: Resource) -> StoredResource:
        check(resource)
        self._check_open()
        key = self.layout.of(resource)
        now = datetime.now(UTC)
        response = await self.kv.txn(
            [kv.absent(key)], [kv.put(key, encode_value(resource, now, now))], []
        )
        if not response.succeeded:
            raise AlreadyExistsError(ResourceKey.of(resource))
        return StoredResource(resource, ResourceMeta(str(response.header.revision), now, now))

    async def update(self, resource: Resource, *, version: str) -> StoredResource:
        check(resource)
        self._check_open()
        rkey = ResourceKey.of(resource)
        key = self.layout.key(rkey)
        expected = _revision(version)
        current = await self.kv.range(key)
        if not current.kvs:
            raise NotFoundError(rkey)
        raw = current.kvs[0]
        if raw.mod_revision != expected:
            raise ConflictError(rkey, f"version {version} is stale (current {raw.mod_revision})")
        # The creation time lives in the value: carry it over. A value that is not a valid
        # resource (written by hand) has none worth keeping, and may be repaired this way.
        try:
            created = decode_value(rkey, raw.value, raw.mod_revision).meta.creation_time
        except InvalidEntry:
            created = datetime.now(UTC)
        now = max(datetime.now(UTC), created)
        response = await self.kv.txn(
            [kv.mod_revision_is(key, expected)],
            [kv.put(key, encode_value(resource, created, now))],
            [kv.get(key)],
        )
        if not response.succeeded:
            self._raise_lost_race(rkey, version, response)
        return StoredResource(resource, ResourceMeta(str(response.header.revision), created, now))

    async def delete(self, key: ResourceKey, *, version: str | None = None) -> None:
        self._check_open()
        raw_key = self.layout.key(key)
        if version is None:
            compare = [kv.exists(raw_key)]
        else:
            # Both: a missing key has mod_revision 0, which a version "0" would match.
            compare = [kv.exists(raw_key), kv.mod_revision_is(raw_key, _revision(version))]
        response = await self.kv.txn(compare, [kv.delete(raw_key)], [kv.get(raw_key)])
        if not response.succeeded:
            self._raise_lost_race(key, version, response)
        self._book.clear(raw_key)

    @staticmethod
    def _raise_lost_race(key: ResourceKey, version: str | None, response: Any) -> None:
        """A compare failed: NotFoundError if the key is gone, else ConflictError."""
        found = response.responses[0].response_range.kvs
        if not found:
            raise NotFoundError(key)
        current = found[0].mod_revision
        raise ConflictError(key, f"version {version} is stale (current {current})")

    # --- watch ---------------------------------------------------------------------------------

    def watch(self) -> AbstractAsyncContextManager[AsyncIterator[WatchItem]]:
        return self._watch()

    @asynccontextmanager
    async def _watch(self) -> AsyncIterator[AsyncIterator[WatchItem]]:
        self._check_open()
        watch = ResourceWatch(self._connection, self._decoder)
        self._watches.add(watch)
        try:
            await self._task_group.start(watch.run)
            async with watch.receive:
                yield watch.receive
        finally:
            self._watches.discard(watch)
            await watch.stop()

    # --- insights (kuma.insights.SupportsInsights) ---------------------------------------------

    def insight_store(self) -> EtcdInsightStore:
        """DataplaneInsights under ``<prefix>-insights/``, outside every resource watch, shared
        with the other instances through a watch of their own (see ``insights``)."""
        self._check_open()
        if self._insights is None:
            self._insights = EtcdInsightStore(self, max_txn_ops=_MAX_TXN_OPS)
            follower = PrefixFollower(self._connection, self._insights.root, self._insights)
            self._watches.add(follower)  # stopped by close() like the resource watches
            self._task_group.start_soon(follower.run)
        return self._insights

    def instances(self) -> EtcdInstances:
        """Which instances sharing this etcd are alive (kuma.insights.SupportsInstances)."""
        self._check_open()
        return EtcdInstances(self._connection, self.layout.root)

    # --- lifecycle -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailableError("the etcd store is closed")

    async def close(self) -> None:
        """End every watch (their server-side watchers are cancelled), then the connection."""
        if self._closed:
            return
        self._closed = True
        for watch in list(self._watches):
            await watch.stop()
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await self.client.close()


def _revision(version: str) -> int:
    """A version as a mod_revision; a version that is not one of ours matches nothing."""
    try:
        return int(version)
    except ValueError:
        return -1
