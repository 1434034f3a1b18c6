"""VIP allocation persisted in the store (kuma/cp/vips.py): stable, never moved, shared."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from kuma.cp import vips as vips_module
from kuma.cp.vips import VipAllocator, allocate, hashed_vip
from kuma.resources import Dataplane, MeshVips, ResourceKey, from_document
from kuma.store import ConflictError, NotFoundError, Store, StoreUnavailableError, open_store
from tests.fixtures.etcd import shared_store

pytestmark = pytest.mark.anyio

KEY = ResourceKey("MeshVips", "", "default")


def dataplane(name: str, *services: str, mesh: str = "default") -> Dataplane:
    resource = from_document(
        {
            "type": "Dataplane",
            "mesh": mesh,
            "name": name,
            "networking": {
                "address": "10.0.0.1",
                "inbound": [
                    {"port": 10000 + i, "tags": {"kuma.io/service": s}}
                    for i, s in enumerate(services)
                ],
            },
        }
    )
    assert isinstance(resource, Dataplane)
    return resource


def small_space(mesh: str, service: str, attempt: int = 0, *, kind: str = "") -> str:
    """A hash into 8 addresses: collisions on almost every allocation."""
    digest = hashlib.blake2b(f"{mesh}/{service}".encode(), digest_size=2).digest()
    return f"240.0.0.{1 + (int.from_bytes(digest, 'big') + attempt) % 8}"


async def stored_vips(store: Store, mesh: str = "default") -> dict[str, str] | None:
    try:
        resource = (await store.get(ResourceKey("MeshVips", "", mesh))).resource
    except NotFoundError:
        return None
    assert isinstance(resource, MeshVips)
    return dict(resource.vips)


async def wait_for(
    store: Store, check: Callable[[dict[str, str] | None], bool], mesh: str = "default"
) -> dict[str, str] | None:
    """The stored allocation once ``check`` holds (looked at after every store event)."""
    with anyio.fail_after(10):
        async with store.watch() as events:
            async for _ in events:
                if check(found := await stored_vips(store, mesh)):
                    return found
    raise AssertionError("the store closed")


def has(*services: str) -> Callable[[dict[str, str] | None], bool]:
    return lambda found: found is not None and set(found) == set(services)


@asynccontextmanager
async def running(*allocators: VipAllocator) -> AsyncIterator[None]:
    # Started together, so that several of them race for the same writes.
    async with anyio.create_task_group() as tg:
        for allocator in allocators:
            tg.start_soon(allocator.run)
        yield
        tg.cancel_scope.cancel()


# --- the rule ------------------------------------------------------------------------------------


def test_first_choice_is_the_hash_and_existing_entries_stay() -> None:
    first = allocate("default", {}, {"web", "api"})
    assert first == {"web": hashed_vip("default", "web"), "api": hashed_vip("default", "api")}
    # Entries are kept as stored, whatever the hash says now.
    kept = allocate("default", {"web": "240.0.0.1"}, {"web", "api"})
    assert kept == {"web": "240.0.0.1", "api": hashed_vip("default", "api")}
    # Gone services are released, unless told not to (a retry after a re-read).
    assert allocate("default", kept, {"api"}) == {"api": kept["api"]}
    assert allocate("default", kept, {"api"}, release=False) == kept


def test_a_colliding_newcomer_probes_and_never_moves_an_existing_vip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def colliding(mesh: str, service: str, attempt: int = 0, *, kind: str = "") -> str:
        return f"240.0.0.{1 + attempt}"

    monkeypatch.setattr(vips_module, "hashed_vip", colliding)
    # "zzz" holds the shared first choice; "aaa" sorts first but comes later: it probes.
    assert allocate("default", {"zzz": "240.0.0.1"}, {"aaa", "zzz"}) == {
        "zzz": "240.0.0.1",
        "aaa": "240.0.0.2",
    }


# --- the component ------------------------------------------------------------------------------


async def test_follows_services_appearing_and_vanishing() -> None:
    async with open_store("memory", {}) as store:
        await store.create(dataplane("web-1", "web"))
        await store.create(dataplane("api-1", "api", "web"))
        await store.create(dataplane("web-9", "web", mesh="other"))
        async with running(VipAllocator(store)):
            first = await wait_for(store, has("web", "api"))
            assert first is not None
            await store.create(dataplane("db-1", "db"))
            second = await wait_for(store, has("web", "api", "db"))
            assert second is not None
            assert {s: second[s] for s in first} == first
            # "web" still has a Dataplane after api-1 goes: only "api" is released.
            await store.delete(ResourceKey("Dataplane", "default", "api-1"))
            third = await wait_for(store, has("web", "db"))
            assert third == {s: second[s] for s in ("web", "db")}
            for name in ("web-1", "db-1"):
                await store.delete(ResourceKey("Dataplane", "default", name))
            # No service left: the allocation is deleted; the other mesh keeps its own.
            await wait_for(store, lambda found: found is None)
            assert await stored_vips(store, "other") == {"web": hashed_vip("other", "web")}


async def test_an_unavailable_store_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_store("memory", {}) as store:
        await store.create(dataplane("web-1", "web"))
        create = store.create
        failures = 0

        async def flaky_create(resource: Any) -> Any:
            nonlocal failures
            if failures < 2:
                failures += 1
                raise StoreUnavailableError("etcd is down")
            return await create(resource)

        monkeypatch.setattr(store, "create", flaky_create)
        async with running(VipAllocator(store, retry_interval=0.01)):
            assert await wait_for(store, has("web")) == {"web": hashed_vip("default", "web")}
        assert failures == 2


async def test_stable_across_restarts_even_when_a_newcomer_collides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options: Mapping[str, Any] = {"path": str(tmp_path), "debounceMs": 20}
    async with open_store("directory", options) as store:
        await store.create(dataplane("zzz-1", "zzz"))
        async with running(VipAllocator(store)):
            before = await wait_for(store, has("zzz"))
    assert before is not None
    # The allocation is a file beside the Dataplanes, named like the others.
    assert (tmp_path / "meshvips-default.yaml").read_text().startswith("type: MeshVips\n")

    # After the restart "aaa" (sorting first) wants the very address "zzz" holds.
    def colliding(mesh: str, service: str, attempt: int = 0, *, kind: str = "") -> str:
        return before["zzz"] if attempt == 0 else f"240.0.0.{attempt}"

    monkeypatch.setattr(vips_module, "hashed_vip", colliding)
    async with open_store("directory", options) as store, running(VipAllocator(store)):
        assert await stored_vips(store) == before  # a restart writes nothing
        await store.create(dataplane("aaa-1", "aaa"))
        after = await wait_for(store, has("zzz", "aaa"))
    assert after == {"zzz": before["zzz"], "aaa": "240.0.0.1"}


@pytest.mark.parametrize("kind", ["memory", "etcd"])
async def test_racing_allocators_converge_on_one_allocation(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vips_module, "hashed_vip", small_space)
    async with shared_store(kind, request) as store:
        conflicts = 0
        create, update = store.create, store.update

        async def counting_create(resource: Any) -> Any:
            nonlocal conflicts
            try:
                return await create(resource)
            except ConflictError:
                conflicts += 1
                raise

        async def counting_update(resource: Any, *, version: str) -> Any:
            nonlocal conflicts
            try:
                return await update(resource, version=version)
            except ConflictError:
                conflicts += 1
                raise

        # Every instance sees the same snapshot and races for the first write.
        for i in range(3):
            await create(dataplane(f"dp-{i}", f"svc-{i}"))
        allocators = [VipAllocator(store) for _ in range(3)]
        monkeypatch.setattr(store, "create", counting_create)
        monkeypatch.setattr(store, "update", counting_update)
        async with running(*allocators):
            services = [f"svc-{i}" for i in range(3)]
            # Then bursts of new services, each seen by every instance at about the same time.
            for i in range(3, 8):
                await create(dataplane(f"dp-{i}", f"svc-{i}"))
                services.append(f"svc-{i}")
                if i % 2:
                    await anyio.sleep(0.05)
            final = await wait_for(store, has(*services))
            assert final is not None
            # Eight services in eight addresses: a duplicate would leave one out.
            assert sorted(final.values()) == [f"240.0.0.{n}" for n in range(1, 9)]
            # Quiet now: every instance agrees with the store and writes nothing more.
            version = (await store.get(KEY)).meta.version
            await anyio.sleep(0.3)
            assert (await store.get(KEY)).meta.version == version
            assert await stored_vips(store) == final
        assert conflicts > 0, "the allocators never raced: the test proved nothing"
