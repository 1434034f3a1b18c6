"""Writers racing the API (409, nothing lost) and a failing store (503, 500)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager

import pytest

from kuma.resources import Resource, ResourceKey, StoredResource, decode_one
from kuma.store import Problem, ResourcePage, StoreUnavailableError, WatchItem
from kuma.store.memory import MemoryStore

from .helpers import dataplane_yaml, error, serve

pytestmark = pytest.mark.anyio

WEB = "/meshes/default/dataplanes/web-01"
WEB_KEY = ResourceKey("Dataplane", "default", "web-01")


class InterferingStore:
    """A memory store that runs ``interfere`` once, right after the API has read ``key``:
    another writer acting between the API's read and its write."""

    name = "interfering"

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.interfere: Callable[[], Awaitable[object]] | None = None
        self.fail_with: Exception | None = None

    async def get(self, key: ResourceKey) -> StoredResource:
        try:
            return await self.inner.get(key)
        finally:
            if key == WEB_KEY and self.interfere is not None:
                interfere, self.interfere = self.interfere, None
                await interfere()

    async def list(
        self,
        type: str,
        mesh: str | None = None,
        *,
        limit: int | None = None,
        offset: str | None = None,
    ) -> ResourcePage:
        if self.fail_with is not None:
            raise self.fail_with
        return await self.inner.list(type, mesh, limit=limit, offset=offset)

    async def create(self, resource: Resource) -> StoredResource:
        return await self.inner.create(resource)

    async def update(self, resource: Resource, *, version: str) -> StoredResource:
        return await self.inner.update(resource, version=version)

    async def delete(self, key: ResourceKey, *, version: str | None = None) -> None:
        await self.inner.delete(key, version=version)

    def watch(self) -> AbstractAsyncContextManager[AsyncIterator[WatchItem]]:
        return self.inner.watch()

    def problems(self) -> Sequence[Problem]:
        return self.inner.problems()


@pytest.fixture
def racing(store: MemoryStore) -> InterferingStore:
    return InterferingStore(store)


async def test_update_racing_another_writer_is_409(racing: InterferingStore) -> None:
    await racing.inner.create(decode_one(dataplane_yaml("web-01", port=1001)))

    async def other_writer() -> None:
        current = await racing.inner.get(WEB_KEY)
        await racing.inner.update(
            decode_one(dataplane_yaml("web-01", port=2002)), version=current.meta.version
        )

    racing.interfere = other_writer
    async with serve(racing) as api:
        reply = await api.put(WEB, dataplane_yaml("web-01", port=3003))
        assert reply.status == 409
        assert reply.json["title"] == "Conflict"
        assert "changed concurrently" in reply.json["detail"]
        # The other writer's update stands; ours was not half-applied.
        stored = (await api.get(WEB)).json
        assert stored["networking"]["inbound"][0]["port"] == 2002
        # Retried, it goes through.
        assert (await api.put(WEB, dataplane_yaml("web-01", port=3003))).status == 200


async def test_create_racing_another_creator_is_409(racing: InterferingStore) -> None:
    async def other_creator() -> None:
        await racing.inner.create(decode_one(dataplane_yaml("web-01", port=2002)))

    racing.interfere = other_creator
    async with serve(racing) as api:
        reply = await api.put(WEB, dataplane_yaml("web-01", port=3003))
        assert reply.status == 409
        assert "already exists" in reply.json["detail"]


async def test_update_racing_a_delete_is_409(racing: InterferingStore) -> None:
    await racing.inner.create(decode_one(dataplane_yaml("web-01")))

    async def other_deleter() -> None:
        await racing.inner.delete(WEB_KEY)

    racing.interfere = other_deleter
    async with serve(racing) as api:
        assert (await api.put(WEB, dataplane_yaml("web-01", port=3003))).status == 409
        assert (await api.get(WEB)).status == 404


async def test_delete_racing_an_update_is_409(racing: InterferingStore) -> None:
    await racing.inner.create(decode_one(dataplane_yaml("web-01", port=1001)))

    async def other_writer() -> None:
        current = await racing.inner.get(WEB_KEY)
        await racing.inner.update(
            decode_one(dataplane_yaml("web-01", port=2002)), version=current.meta.version
        )

    racing.interfere = other_writer
    async with serve(racing) as api:
        assert (await api.delete(WEB)).status == 409
        assert (await api.get(WEB)).status == 200


async def test_an_unavailable_store_is_503(racing: InterferingStore) -> None:
    racing.fail_with = StoreUnavailableError("etcd at http://127.0.0.1:1 is unreachable")
    async with serve(racing) as api:
        reply = await api.get("/meshes")
        assert reply.status == 503
        assert reply.json == error(
            503, "Service unavailable", "etcd at http://127.0.0.1:1 is unreachable"
        )


async def test_an_unexpected_failure_is_500_and_logged(
    racing: InterferingStore, caplog: pytest.LogCaptureFixture
) -> None:
    racing.fail_with = RuntimeError("boom")
    async with serve(racing) as api:
        with caplog.at_level(logging.ERROR, logger="kuma.api"):
            reply = await api.get("/meshes")
    assert reply.status == 500
    assert reply.json == error(500, "Internal Server Error", "Internal Server Error")
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)
