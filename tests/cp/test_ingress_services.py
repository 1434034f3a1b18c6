"""The writer of the zone's availableServices: coalesced, only on a real change, and exactly
once across control-plane instances sharing one store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from kuma.cp.ingress_services import IngressServicesWriter
from kuma.resources import ResourceKey, ZoneIngress
from kuma.store import (
    ConflictError,
    Operation,
    ResourceEvent,
    Store,
    StoreUnavailableError,
    open_store,
)
from kuma.xds.engine import Engine
from kuma.xds.engine.available_services import AvailableServicesIndex
from kuma.xds.engine.handlers import default_handlers
from tests.fixtures.etcd import shared_store
from tests.multizone.test_available_services import dataplane, inbound, ingress, mesh

pytestmark = pytest.mark.anyio

KEY = ResourceKey(ZoneIngress.TYPE, "", "ingress-1")
SVC = "kuma.io/service"


async def listed(store: Store) -> list[tuple[str, int]]:
    resource = (await store.get(KEY)).resource
    assert isinstance(resource, ZoneIngress)
    return [(s.tags[SVC], s.instances) for s in resource.available_services]


async def until(check: Callable[[], Any]) -> None:
    """Wait for a state reached through the event loop (the writer's pass, a watch event)."""
    with anyio.fail_after(10):
        while not await check():  # noqa: ASYNC110
            await anyio.sleep(0.01)


class Instance:
    """One control plane's engine, index and writer on a shared store."""

    def __init__(self, store: Store, zone: str = "") -> None:
        self.engine = Engine(handlers=default_handlers(zone=zone))
        self.writer = IngressServicesWriter(
            store, AvailableServicesIndex(zone), quiet=0.02, max_delay=0.5
        )
        self.engine.inputs.add_observer(self.writer.index)


@asynccontextmanager
async def running(store: Store, *instances: Instance) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        for instance in instances:
            tg.start_soon(instance.engine.run, store)
            tg.start_soon(instance.writer.run)
        yield
        tg.cancel_scope.cancel()


async def test_a_burst_is_one_write_and_an_unchanged_list_none() -> None:
    async with open_store("memory", {}) as store:
        await store.create(mesh())
        stored = await store.create(ingress())
        instance = Instance(store)
        engine, writer = instance.engine, instance.writer
        engine.apply_now([ResourceEvent(Operation.CREATE, mesh(), stored.meta, 1)])
        engine.apply_now([ResourceEvent(Operation.CREATE, stored.resource, stored.meta, 1)])
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            # A thousand batches, each a change of the list, before the writer gets a turn.
            for i in range(1000):
                created = await store.create(dataplane(f"web-{i}", inbound(f"svc-{i % 10}")))
                engine.apply_now(
                    [ResourceEvent(Operation.CREATE, created.resource, created.meta, 1)]
                )

            async def written() -> bool:
                return writer.passes == 1

            await until(written)
            assert writer.writes == 1
            assert await listed(store) == [(f"svc-{i}", 100) for i in range(10)]

            # Its own write comes back through the watch: the writer looks, writes nothing.
            own = await store.get(KEY)
            engine.apply_now([ResourceEvent(Operation.UPDATE, own.resource, own.meta, 2)])

            async def looked() -> bool:
                return writer.passes == 2

            await until(looked)
            assert writer.writes == 1
            assert (await store.get(KEY)).meta.version == own.meta.version
            # A change that keeps every tag set (an address) does not even wake the writer.
            moved = dataplane("web-0", inbound("svc-0"), address="10.1.1.1")
            engine.apply_now([ResourceEvent(Operation.UPDATE, moved, own.meta, 3)])
            assert writer.index.stale() == []
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("kind", ["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
async def test_two_instances_write_each_change_once(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with shared_store(kind, request) as store:
        writes = conflicts = 0
        update = store.update

        async def counting_update(resource: Any, *, version: str) -> Any:
            nonlocal writes, conflicts
            try:
                stored = await update(resource, version=version)
            except ConflictError:
                conflicts += 1
                raise
            writes += isinstance(resource, ZoneIngress)
            return stored

        monkeypatch.setattr(store, "update", counting_update)
        await store.create(mesh())
        await store.create(ingress(zone="zone-1"))
        first, second = Instance(store, "zone-1"), Instance(store, "zone-1")

        async def counted(count: int) -> bool:
            # A write is counted when its update returns, which may trail its watch event.
            return writes >= count

        async def settled(expected: list[tuple[str, int]]) -> bool:
            """The store holds ``expected`` and both instances have seen that version."""
            stored = await store.get(KEY)
            if await listed(store) != expected:
                return False
            return all(
                (seen := i.writer.index.ingresses.get("ingress-1")) is not None
                and seen.version == stored.meta.version
                and not i.writer.index.stale()
                for i in (first, second)
            )

        async with running(store, first, second):
            await until(lambda: settled([]))
            assert writes == 0  # nothing to list, nothing written
            changes = [
                (dataplane("web-1", inbound("web")), [("web", 1)]),
                (dataplane("web-2", inbound("web")), [("web", 2)]),
                (dataplane("api-1", inbound("api")), [("api", 1), ("web", 2)]),
            ]
            for count, (resource, expected) in enumerate(changes, start=1):
                await store.create(resource)
                await until(lambda expected=expected: settled(expected))  # type: ignore[misc]
                await until(lambda count=count: counted(count))  # type: ignore[misc]
                assert writes == count
            await store.delete(ResourceKey("Dataplane", "default", "api-1"))
            await until(lambda: settled([("web", 2)]))
            await until(lambda: counted(len(changes) + 1))
            assert writes == len(changes) + 1
        # Both instances saw every change; each time one of them wrote it.
        assert first.writer.writes + second.writer.writes == writes


async def test_a_failed_write_is_retried() -> None:
    async with open_store("memory", {}) as store:
        await store.create(mesh())
        await store.create(ingress())
        instance = Instance(store)
        instance.writer.retry_interval = 0.05
        update, failures = store.update, 0

        async def failing_once(resource: Any, *, version: str) -> Any:
            nonlocal failures
            if isinstance(resource, ZoneIngress) and not failures:
                failures += 1
                raise StoreUnavailableError("etcd is away")
            return await update(resource, version=version)

        store.update = failing_once  # type: ignore[method-assign]
        async with running(store, instance):
            await store.create(dataplane("web-1", inbound("web")))

            async def written() -> bool:
                return await listed(store) == [("web", 1)]

            await until(written)
        assert failures == 1
        assert instance.writer.writes == 1


async def test_a_steady_stream_of_changes_is_written_every_max_delay() -> None:
    """Changes never quiet for ``quiet`` seconds: the writer still writes, ``max_delay``
    (Kuma's ingressUpdateInterval) after the first unwritten change, and the last state once
    they stop."""
    async with open_store("memory", {}) as store:
        await store.create(mesh())
        stored = await store.create(ingress())
        instance = Instance(store)
        engine, writer = instance.engine, instance.writer
        writer.quiet, writer.max_delay = 0.05, 0.2
        engine.apply_now([ResourceEvent(Operation.CREATE, stored.resource, stored.meta, 1)])
        engine.apply_now([ResourceEvent(Operation.CREATE, mesh(), stored.meta, 1)])
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            started = anyio.current_time()
            count = 0
            while anyio.current_time() - started < 0.8:
                count += 1
                made = await store.create(dataplane(f"web-{count}", inbound("web")))
                engine.apply_now([ResourceEvent(Operation.CREATE, made.resource, made.meta, 1)])
                await anyio.sleep(0.01)
            during = writer.writes
            # Each write comes back through the watch: the writer builds on what it wrote.

            async def last_written() -> bool:
                return await listed(store) == [("web", count)]

            await until(last_written)
            tg.cancel_scope.cancel()
        assert during >= 2, "the writer waited for a quiet moment that never came"


async def _idle_writer(store: Store, *, quiet: float) -> Instance:
    """An instance whose engine holds the mesh and the ingress; the writer not started."""
    await store.create(mesh())
    stored = await store.create(ingress())
    instance = Instance(store)
    instance.writer.quiet = quiet
    instance.writer.max_delay = max(quiet, instance.writer.max_delay)
    engine = instance.engine
    engine.apply_now([ResourceEvent(Operation.CREATE, mesh(), stored.meta, 1)])
    engine.apply_now([ResourceEvent(Operation.CREATE, stored.resource, stored.meta, 1)])
    return instance


async def _change(store: Store, instance: Instance, name: str, service: str) -> None:
    made = await store.create(dataplane(name, inbound(service)))
    instance.engine.apply_now([ResourceEvent(Operation.CREATE, made.resource, made.meta, 1)])


async def test_a_lone_change_is_written_without_waiting_for_a_quiet_period() -> None:
    """The first hop of every cross-zone change: an idle writer writes a change at once. With
    a quiet period of an hour, a writer that waited for it would never write here."""
    async with open_store("memory", {}) as store:
        instance = await _idle_writer(store, quiet=3600)
        async with anyio.create_task_group() as tg:
            tg.start_soon(instance.writer.run)
            await _change(store, instance, "web-1", "web")

            async def written() -> bool:
                return await listed(store) == [("web", 1)]

            await until(written)
            assert instance.writer.writes == 1
            tg.cancel_scope.cancel()


async def test_changes_during_a_write_are_coalesced_into_one_more() -> None:
    async with open_store("memory", {}) as store:
        instance = await _idle_writer(store, quiet=0.02)
        update, entered, release = store.update, anyio.Event(), anyio.Event()
        ingress_writes = 0

        async def held_update(resource: Any, *, version: str) -> Any:
            nonlocal ingress_writes
            if isinstance(resource, ZoneIngress):
                ingress_writes += 1
                entered.set()
                await release.wait()
            return await update(resource, version=version)

        store.update = held_update  # type: ignore[method-assign]
        async with anyio.create_task_group() as tg:
            tg.start_soon(instance.writer.run)
            await _change(store, instance, "web-1", "web")
            with anyio.fail_after(10):
                await entered.wait()  # the first change's write is in flight
            for i in range(50):
                await _change(store, instance, f"api-{i}", "api")
            release.set()

            async def all_written() -> bool:
                return await listed(store) == [("api", 50), ("web", 1)]

            await until(all_written)
            tg.cancel_scope.cancel()
        # The first change alone, then the fifty that came during its write as one.
        assert ingress_writes == 2
        assert instance.writer.writes == 2
