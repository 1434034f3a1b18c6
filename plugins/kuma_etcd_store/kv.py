"""Unary etcd calls on aetcd's gRPC stubs, with deadlines and the store's errors.

aetcd's high-level methods leave out what the store needs (range limits and pinned revisions
for paged snapshots, the response header of a transaction for the new mod_revision), so the
requests are built here from aetcd's protobuf messages and sent on its channel.

Calls wait for the channel to be ready (up to their deadline) instead of failing at once while
gRPC reconnects: a write during a short etcd restart succeeds late rather than failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aetcd
from aetcd import rpc

from kuma.store import StoreUnavailableError


class CompactedError(Exception):
    """A range pinned to a revision that etcd has compacted away meanwhile."""


@dataclass(frozen=True)
class Header:
    """Identity and position of the etcd that answered (see the watch's wipe detection)."""

    cluster_id: int
    revision: int
    raft_term: int

    @classmethod
    def of(cls, header: Any) -> Header:
        return cls(header.cluster_id, header.revision, header.raft_term)


@dataclass(frozen=True)
class Scan:
    """Every key-value of a range, read page by page at one revision (``header.revision``)."""

    header: Header
    kvs: list[Any]


def prefix_end(prefix: bytes) -> bytes:
    return bytes(aetcd.utils.prefix_range_end(prefix))


def absent(key: bytes) -> Any:
    return rpc.Compare(key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL)


def exists(key: bytes) -> Any:
    return rpc.Compare(key=key, target=rpc.Compare.VERSION, result=rpc.Compare.GREATER, version=0)


def mod_revision_is(key: bytes, revision: int) -> Any:
    return rpc.Compare(
        key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision
    )


def put(key: bytes, value: bytes) -> Any:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))


def delete(key: bytes) -> Any:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))


def get(key: bytes) -> Any:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))


class KV:
    def __init__(self, client: aetcd.Client, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    def _stub(self) -> Any:
        stub = self._client.kvstub
        if stub is None:  # aetcd drops its stubs when the client is closed
            raise StoreUnavailableError("the etcd store is closed")
        return stub

    async def range(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        revision: int = 0,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> Any:
        request = rpc.RangeRequest(
            key=key,
            range_end=range_end,
            revision=revision,
            limit=limit,
            keys_only=keys_only,
            count_only=count_only,
        )
        try:
            return await self._stub().Range(
                request, timeout=self._timeout, metadata=self._client.metadata, wait_for_ready=True
            )
        except rpc.AioRpcError as exc:
            if exc.code() == rpc.StatusCode.OUT_OF_RANGE and "compacted" in (exc.details() or ""):
                raise CompactedError(exc.details()) from None
            raise _unavailable(exc) from None

    async def txn(self, compare: list[Any], success: list[Any], failure: list[Any]) -> Any:
        request = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        try:
            return await self._stub().Txn(
                request, timeout=self._timeout, metadata=self._client.metadata, wait_for_ready=True
            )
        except rpc.AioRpcError as exc:
            raise _unavailable(exc) from None

    async def scan(self, prefix: bytes, *, page_size: int, keys_only: bool = False) -> Scan:
        """Every key under ``prefix`` at one revision, in key order, ``page_size`` at a time
        (one response must stay under gRPC's message limit). Restarts from the then current
        revision if etcd compacts the pinned one before the last page is read."""
        end = prefix_end(prefix)
        while True:
            try:
                return await self._scan_once(prefix, end, page_size, keys_only)
            except CompactedError:
                continue

    async def _scan_once(self, start: bytes, end: bytes, page_size: int, keys_only: bool) -> Scan:
        kvs: list[Any] = []
        revision = 0
        header: Header | None = None
        while True:
            response = await self.range(
                start, end, revision=revision, limit=page_size, keys_only=keys_only
            )
            if header is None:
                header = Header.of(response.header)
                revision = header.revision
            kvs.extend(response.kvs)
            if not response.more or not response.kvs:
                return Scan(header, kvs)
            start = response.kvs[-1].key + b"\x00"


def _unavailable(exc: Any) -> StoreUnavailableError:
    return StoreUnavailableError(f"etcd: {exc.code().name}: {exc.details()}")
