"""Following one etcd prefix across disconnects, compactions and a wiped etcd: the transport.

:class:`PrefixFollower` owns the loop (list, follow, resume, check identity, cancel) and the
etcd revision to resume from; what the keys *mean* belongs to a :class:`WatchSink`:

- ``relist(kvs, revision)``: the whole prefix as of ``revision`` (the first time, and after a
  compaction or a wiped etcd: the sink works out what changed);
- ``apply(event)``: one change, in revision order, never one already applied.

Two sinks exist: the resource watch's (``watch.py``: decoded resources, events to a consumer)
and the insight store's (``insights.py``: raw values in a dict).

The resume revision is the last event's mod_revision + 1, or a progress notification's
revision + 1 (an event response's header revision is not a safe resume point: etcd may still
send older events after it). Then:

- disconnect (etcd killed, restarted, frozen and noticed by keepalive): back off, check that it
  is still the same etcd, and watch again from the resume revision: etcd replays exactly what
  was missed, so nothing is lost and nothing is delivered twice;
- the resume revision was compacted (a response with ``compact_revision``): the history is gone,
  so re-list;
- etcd was wiped or replaced (cluster id changed, revision or raft term went backwards): the
  resume revision means nothing there; re-list. (Not detectable: a wiped single member, same
  cluster id, written past the old revision before the watch comes back without its raft term
  dropping below the old one.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import aetcd
import anyio
from aetcd import rpc
from anyio.abc import TaskStatus

from kuma.store import StoreUnavailableError

from .config import EtcdOptions
from .kv import KV, Header, prefix_end

log = logging.getLogger(__name__)

_INITIAL_BACKOFF = 0.1
#: Transport trouble: back off and resume (anything else is a bug, logged with its traceback,
#: and retried the same way: a watch never crashes its consumer).
_RETRYABLE = (
    aetcd.ClientError,
    StoreUnavailableError,
    rpc.AioRpcError,
    OSError,
    TimeoutError,
)


class WatchSink(Protocol):
    async def relist(self, kvs: Sequence[Any], revision: int) -> None:
        """The whole prefix as of etcd ``revision`` (key-values in key order)."""
        ...

    def apply(self, event: Any) -> None:
        """One change (an etcd ``mvccpb.Event``), in revision order, never twice."""
        ...


@dataclass(frozen=True)
class EtcdConnection:
    """What a follower needs of the store: its client, reads, options, and the lock by which
    followers start their gRPC streams one at a time (see :meth:`PrefixFollower._follow`)."""

    client: aetcd.Client
    kv: KV
    options: EtcdOptions
    stream_start_lock: anyio.Lock


def grpc_call_tasks() -> set[Any]:
    """grpc.aio's tasks that wait for the final status of a streaming call from gRPC's core
    (matched by name: grpc offers no handle on them; no match only means no waiting)."""
    return {
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "_AioCall._handle_status_once_received"
    }


class _Wiped(Exception):
    """The etcd answering now is not the one the watch was following."""


class Compacted(Exception):
    """etcd no longer has the history the watch would resume from."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"history before revision {revision} is compacted")


class PrefixFollower:
    def __init__(self, connection: EtcdConnection, root: bytes, sink: WatchSink) -> None:
        self._etcd = connection
        self._root = root
        self._sink = sink
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()
        #: The etcd revision to resume from.
        self._next = 0
        #: The newest header seen from the etcd being followed (its identity and position).
        self._known: Header | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow until :meth:`stop` (or until the sink's consumer is gone)."""
        task_status.started()
        try:
            with self._scope:
                await self._follow_forever()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the consumer is gone
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Stop following etcd (cancelling the server-side watcher)."""
        self._scope.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await self._done.wait()

    async def _follow_forever(self) -> None:
        backoff = _INITIAL_BACKOFF
        relist = True
        while True:
            try:
                if relist:
                    await self._relist()
                    relist = False
                else:
                    await self._check_identity()
                await self._follow()
            except _Wiped as exc:
                log.warning(
                    "etcd under %s was wiped or replaced (%s): re-listing", self._where, exc
                )
                relist = True
            except Compacted as exc:
                log.info("etcd compacted the watch's history (%s): re-listing", exc)
                relist = True
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise  # the consumer is gone: nothing to retry for
            except _RETRYABLE as exc:
                log.warning(
                    "etcd watch on %s interrupted (%s: %s); retrying in %.1fs",
                    self._where, type(exc).__name__, exc, backoff,
                )  # fmt: skip
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, self._etcd.options.max_retry_backoff)
                continue
            except Exception:
                log.exception("etcd watch on %s failed; retrying in %.1fs", self._where, backoff)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, self._etcd.options.max_retry_backoff)
                continue
            backoff = _INITIAL_BACKOFF

    @property
    def _where(self) -> str:
        return self._root.decode(errors="replace")

    # --- following etcd ------------------------------------------------------------------------

    async def _follow(self) -> None:
        """Watch from the resume revision until something breaks (it always does, eventually).

        One gRPC stream per watch, driven here rather than through aetcd's ``watch_prefix``:
        aetcd's watches share one stream, drop response headers (progress notifications) and
        give no way to wait for a cancelled stream to finish, which leaves gRPC completions
        pending past the end of the stream's event loop.
        """
        etcd = self._etcd
        # gRPC's completion task of the call is told apart from others' by appearing while it
        # starts; the store's watches start their streams one at a time for that.
        lock = etcd.stream_start_lock
        await lock.acquire()
        locked = True
        before = grpc_call_tasks()
        call = rpc.WatchStub(etcd.client.channel).Watch(
            metadata=etcd.client.metadata, wait_for_ready=True
        )
        watch_id: int | None = None
        finishing: set[Any] | None = None
        try:
            # Bounded: a frozen etcd accepts the connection and never answers.
            with anyio.fail_after(etcd.options.request_timeout):
                await call.write(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
                    key=self._root,
                    range_end=prefix_end(self._root),
                    start_revision=self._next,
                    progress_notify=True,
                )))  # fmt: skip
                created = await self._read(call)
            finishing = grpc_call_tasks() - before
            lock.release()
            locked = False
            if not created.created:
                raise StoreUnavailableError(f"etcd answered a watch request with {created}")
            watch_id = created.watch_id
            while True:
                response = await self._read(call)
                for event in response.events:
                    self._apply(event)
                if not response.events and response.header.revision >= self._next:
                    # A progress notification: every change up to that revision was sent.
                    self._next = response.header.revision + 1
        finally:
            if finishing is None:
                finishing = grpc_call_tasks() - before
            if locked:
                lock.release()
            with anyio.CancelScope(shield=True):
                await self._cancel(call, watch_id, finishing)

    @staticmethod
    async def _read_raw(call: Any) -> Any:
        response = await call.read()
        if not isinstance(response, rpc.WatchResponse):  # gRPC's EOF: etcd ended the stream
            raise StoreUnavailableError("etcd ended the watch stream")
        return response

    async def _read(self, call: Any) -> Any:
        response = await self._read_raw(call)
        if response.compact_revision:
            raise Compacted(response.compact_revision)
        if response.canceled:
            raise StoreUnavailableError(f"etcd cancelled the watch: {response.cancel_reason}")
        return response

    async def _cancel(self, call: Any, watch_id: int | None, finishing: set[Any]) -> None:
        """Cancel the server-side watcher (confirmed, while etcd answers), then the stream.

        etcd ignores a half-close, so the stream ends by cancelling the call (etcd drops the
        watchers of a stream that ends, confirmed or not). gRPC reports a cancelled call done
        at once but completes it in its core a moment later, in a task of the event loop:
        ``finishing`` are those tasks, waited for so that no completion outlives the loop.
        """
        if watch_id is not None and not call.done():
            with anyio.move_on_after(1):
                cancel = rpc.WatchCancelRequest(watch_id=watch_id)
                await call.write(rpc.WatchRequest(cancel_request=cancel))
                while not (await self._read_raw(call)).canceled:
                    pass
        call.cancel()
        if finishing:
            await asyncio.wait(finishing, timeout=1)

    def _apply(self, event: Any) -> None:
        revision = event.kv.mod_revision
        if revision + 1 < self._next:
            # Older than the last revision applied: already delivered, never twice. (Equal is
            # fine: one etcd transaction may change several keys in one revision.)
            return
        self._next = revision + 1
        if self._known is not None and revision > self._known.revision:
            self._known = replace(self._known, revision=revision)
        self._sink.apply(event)

    # --- identity and re-listing -----------------------------------------------------------------

    async def _check_identity(self) -> None:
        """Before resuming: is this still the etcd whose revisions the watch was following?"""
        response = await self._etcd.kv.range(self._root, prefix_end(self._root), count_only=True)
        header = Header.of(response.header)
        known = self._known
        if known is not None:
            if header.cluster_id != known.cluster_id:
                raise _Wiped(f"cluster id {known.cluster_id:x} is now {header.cluster_id:x}")
            if header.revision < known.revision:
                raise _Wiped(f"revision went back from {known.revision} to {header.revision}")
            if header.raft_term < known.raft_term:
                raise _Wiped(f"raft term went back from {known.raft_term} to {header.raft_term}")
        self._known = header

    async def _relist(self) -> None:
        """Read the whole prefix at one revision and hand it to the sink."""
        scan = await self._etcd.kv.scan(self._root, page_size=self._etcd.options.page_size)
        await self._sink.relist(scan.kvs, scan.header.revision)
        self._next = scan.header.revision + 1
        self._known = scan.header
