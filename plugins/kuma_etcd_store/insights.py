"""DataplaneInsights in etcd: shared by every kuma-cp on the etcd, kept across restarts.

Keys: ``<prefix>-insights/<mesh>/<name>``, one per Dataplane, whose value is Kuma's JSON of the
DataplaneInsight spec (``{"subscriptions": [...]}``, :func:`kuma.insights.insight_json`). The
prefix is a *sibling* of the resources' ``<prefix>/``, not a folder inside it: a resource watch
asks etcd for the range ``[<prefix>/, <prefix>0)``, which ``<prefix>-insights/`` is outside of
(``-`` sorts before ``/``), so an insight write never reaches a resource watch or the engine.
(``<prefix>/_insights/`` would be inside that range.) The configuration refuses a prefix ending
in ``-insights``, so one control plane's insights never land in another's resources.

Why one key per Dataplane, merged by compare-and-swap, rather than one key per subscription:
the value stays exactly Kuma's DataplaneInsight, and Kuma's merge rule
(:func:`kuma.insights.model.update_subscription`: replace by id, else close the stale ones and
append, keep two) runs unchanged on the whole insight, so a proxy that moved from instance A to
B is not shown online forever by the subscription of an A that died. Per-subscription keys
would need that rule re-done on every read, and a sweeper for the keys beyond the last two.

Writes: a batch of the flusher (500 subscriptions) is merged into the insights this instance
holds and written in transactions of at most ``max_txn_ops`` keys (etcd's ``--max-txn-ops``,
128): each put is guarded by ``mod_revision == <the revision the merge started from>``. When
another instance wrote one of the keys meanwhile, the transaction fails as a whole, its failure
branch reads the current values of its keys, and they are merged again (a few attempts, then
the batch fails and the flusher retries it on its next tick). Subscriptions are never lost:
each belongs to one instance (the one holding its stream), and the others only ever replace
theirs or append.

Reads: :meth:`EtcdInsightStore.get` is synchronous (the API renders a page of Dataplanes with
their insights without I/O), so every instance follows the insight prefix with a watch of its
own (a :class:`~.follow.PrefixFollower` with this store as its sink: the resource watch's
reconnect, compaction and wipe handling, applying to a dict instead of emitting events).
Values are kept as bytes and decoded on read: following costs a dict update per write,
whichever instance made it. Until the follower's first listing is done (``synced``) a read
may miss insights written by other instances.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import anyio
import orjson
from aetcd import rpc

from kuma.insights.model import (
    DataplaneInsight,
    DiscoverySubscription,
    insight_from_json,
    insight_json,
    update_subscription,
)
from kuma.insights.store import Update
from kuma.insights.tracker import Clock
from kuma.store import StoreUnavailableError

from . import kv
from .layout import KeyLayout

log = logging.getLogger(__name__)

#: Suffix of the insights' sibling prefix (also refused as the end of a configured prefix).
SUFFIX = "-insights"
#: Merge-and-write attempts of one transaction before the batch fails (and is retried later).
_ATTEMPTS = 5


def insights_root(resource_root: bytes) -> bytes:
    """``<prefix>-insights/`` for the resources' ``<prefix>/``."""
    return resource_root.rstrip(b"/") + SUFFIX.encode() + b"/"


class _Entry:
    """A key's value as last written or seen, decoded on first read."""

    __slots__ = ("decoded", "raw", "revision")

    def __init__(self, raw: bytes, revision: int) -> None:
        self.raw = raw
        self.revision = revision
        self.decoded: DataplaneInsight | bool | None = False  # False: not decoded yet


class _ResourceStore(Protocol):
    """What the insight store uses of the etcd store: its reads and writes, its key layout."""

    @property
    def kv(self) -> kv.KV: ...

    @property
    def layout(self) -> KeyLayout: ...


class EtcdInsightStore:
    """An :class:`kuma.insights.InsightStore` on the etcd store's connection, and the
    :class:`~.follow.WatchSink` of the follower of its prefix."""

    name = "etcd"

    def __init__(self, store: _ResourceStore, *, clock: Clock = time.time, max_txn_ops: int = 128):
        if max_txn_ops < 1:
            raise ValueError("max_txn_ops must be positive")
        self.root = insights_root(store.layout.root)
        self.max_txn_ops = max_txn_ops
        self._kv = store.kv
        self._clock = clock
        self._entries: dict[bytes, _Entry] = {}
        #: The newest etcd revision the follower has applied: it has seen every change up to it.
        self._seen = 0
        #: Set once the follower has listed the prefix (reads include other instances' data).
        self.synced = anyio.Event()
        #: Batches written (one call of ``upsert`` each) and transactions sent, for tests.
        self.writes = 0
        self.txns = 0
        self.conflicts = 0
        #: Told ``(mesh, name)`` of every insight the follower saw change (any instance's write).
        self._listeners: list[Callable[[str, str], None]] = []

    def key(self, mesh: str, name: str) -> bytes:
        return self.root + f"{mesh}/{name}".encode()

    # --- InsightStore -------------------------------------------------------------------------

    def get(self, mesh: str, name: str) -> DataplaneInsight | None:
        return self._decoded(self.key(mesh, name))

    async def upsert(self, updates: Sequence[Update]) -> None:
        now = self._clock()
        by_key: dict[bytes, list[DiscoverySubscription]] = {}
        for mesh, name, subscription in updates:
            by_key.setdefault(self.key(mesh, name), []).append(subscription)
        keys = list(by_key)
        for start in range(0, len(keys), self.max_txn_ops):
            await self._write(keys[start : start + self.max_txn_ops], by_key, now)
        self.writes += 1

    async def replace(self, mesh: str, name: str, insight: DataplaneInsight) -> None:
        """Write ``insight`` whole (a zone's, on global: kuma.insights.ReplacesInsights)."""
        key = self.key(mesh, name)
        value = orjson.dumps(insight_json(insight))
        response = await self._kv.txn([], [kv.put(key, value)], [])
        self.remember(key, value, response.header.revision)

    async def delete(self, mesh: str, name: str) -> None:
        key = self.key(mesh, name)
        response = await self._kv.txn([], [kv.delete(key)], [])
        self.forget(key, response.header.revision)

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> Iterator[tuple[str, str]]:
        """``(mesh, name)`` of every insight held (kuma.insights.ListsInsights)."""
        for key in list(self._entries):
            mesh, _, name = key[len(self.root) :].decode(errors="replace").partition("/")
            yield mesh, name

    # --- writing ------------------------------------------------------------------------------

    async def _write(
        self, keys: list[bytes], by_key: dict[bytes, list[DiscoverySubscription]], now: float
    ) -> None:
        for _ in range(_ATTEMPTS):
            compares: list[Any] = []
            puts: list[Any] = []
            values: list[bytes] = []
            for key in keys:
                entry = self._entries.get(key)
                first, *rest = by_key[key]
                insight = update_subscription(self._decoded(key), first, now=now)
                for subscription in rest:
                    insight = update_subscription(insight, subscription, now=now)
                value = orjson.dumps(insight_json(insight))
                # A key this instance has not seen must still be absent (mod_revision 0).
                compares.append(kv.mod_revision_is(key, entry.revision if entry else 0))
                puts.append(kv.put(key, value))
                values.append(value)
            response = await self._kv.txn(compares, puts, [kv.get(key) for key in keys])
            self.txns += 1
            if response.succeeded:
                for key, value in zip(keys, values, strict=True):
                    self.remember(key, value, response.header.revision)
                return
            # Another instance wrote (or deleted) some of these keys since this one saw them:
            # take the current values, read by the failure branch, and merge again.
            self.conflicts += 1
            for key, op in zip(keys, response.responses, strict=True):
                found = op.response_range.kvs
                if not found:
                    self.forget(key, response.header.revision)
                    continue
                entry = self._entries.get(key)
                if entry is None or found[0].mod_revision > entry.revision:
                    # Read just now, so current whatever the follower has seen yet.
                    self._entries[key] = _Entry(found[0].value, found[0].mod_revision)
        raise StoreUnavailableError(
            f"etcd: {len(keys)} dataplane insights kept changing under this write; will retry"
        )

    # --- change notices (kuma.insights.NotifiesInsights) ---------------------------------------

    def on_insight_changed(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        listeners = self._listeners
        listeners.append(callback)
        return lambda: listeners.remove(callback) if callback in listeners else None

    def _changed(self, keys: Iterable[bytes]) -> None:
        if not self._listeners:
            return
        for key in keys:
            mesh, _, name = key[len(self.root) :].decode(errors="replace").partition("/")
            for listener in tuple(self._listeners):
                listener(mesh, name)

    # --- what this instance holds -------------------------------------------------------------

    def remember(self, key: bytes, value: bytes, revision: int) -> None:
        """``key`` held ``value`` at ``revision``, unless something newer is known.

        A key not held is taken only if the follower has not passed ``revision``: if it has,
        it saw this write and what came after (a deletion), which is newer.
        """
        entry = self._entries.get(key)
        if entry is None:
            if revision <= self._seen:
                return
        elif revision <= entry.revision:
            return
        self._entries[key] = _Entry(value, revision)

    def forget(self, key: bytes, revision: int) -> None:
        """``key`` was deleted at ``revision`` (unless it was written again since)."""
        entry = self._entries.get(key)
        if entry is not None and entry.revision < revision:
            del self._entries[key]

    def apply(self, event: Any) -> None:
        """A change the follower received (in revision order)."""
        raw = event.kv
        if event.type == rpc.Event.DELETE:
            self.forget(raw.key, raw.mod_revision)
        else:
            # A write of this instance may have been taken already (same revision: skipped).
            entry = self._entries.get(raw.key)
            if entry is None or raw.mod_revision > entry.revision:
                self._entries[raw.key] = _Entry(raw.value, raw.mod_revision)
        self._seen = max(self._seen, raw.mod_revision)
        self._changed((raw.key,))

    async def relist(self, kvs: Sequence[Any], revision: int) -> None:
        """The whole prefix as of ``revision``; this instance's newer writes are kept."""
        entries = {raw.key: _Entry(raw.value, raw.mod_revision) for raw in kvs}
        for key, entry in self._entries.items():
            if entry.revision > revision:
                entries[key] = entry
            elif key in entries and entries[key].revision == entry.revision:
                entries[key] = entry  # already decoded
        before = self._entries
        self._entries = entries
        self._seen = max(self._seen, revision)
        self.synced.set()
        self._changed(
            key
            for key in before.keys() | entries.keys()
            if (old := before.get(key)) is None
            or (new := entries.get(key)) is None
            or old.revision != new.revision
        )

    def _decoded(self, key: bytes) -> DataplaneInsight | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.decoded is False:
            try:
                entry.decoded = insight_from_json(orjson.loads(entry.raw))
            except ValueError as exc:  # orjson's JSONDecodeError is a ValueError too
                # Written by hand: ignored, and overwritten (by its revision) by the next flush.
                where = key.decode(errors="replace")
                log.warning("etcd key %s is not a DataplaneInsight, ignored: %s", where, exc)
                entry.decoded = None
        assert not isinstance(entry.decoded, bool)
        return entry.decoded
