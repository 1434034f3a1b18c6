"""The etcd store's watch against a real etcd that is killed, frozen, compacted and wiped.

Each test runs its own etcd (``etcd_factory``) so it may be abused freely. What the consumer
received is checked against etcd's own record of what happened (its history, read afresh),
never against what the test thinks it wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import pytest

from kuma.resources import ResourceKey
from kuma.store import (
    AlreadyExistsError,
    NotFoundError,
    Operation,
    ResourceEvent,
    StoreUnavailableError,
)
from tests.fixtures.etcd import EtcdServer, free_port

from .harness_etcd import Change, dataplane, etcd_history, etcd_store, eventually, raw_client
from .watching import assert_quiet, read_events, read_snapshot

pytestmark = [pytest.mark.anyio, pytest.mark.etcd]

PREFIX = "/kuma"
ROOT = b"/kuma/"
#: Quick detection and recovery, so the tests stay short (etcd_factory's etcd allows 1 s pings).
FAST = {"keepalive_time": 1, "keepalive_timeout": 1, "max_retry_backoff": 0.5, "request_timeout": 2}

EtcdFactory = Callable[[], EtcdServer]


def as_change(event: ResourceEvent) -> Change:
    key = ResourceKey.of(event.resource)
    kind = "DELETE" if event.operation is Operation.DELETE else "PUT"
    return Change(kind, f"{PREFIX}/Dataplane/{key.mesh}/{key.name}".encode(), event.revision)


async def retrying(operation: Callable[[], Awaitable[object]], *done: type[Exception]) -> None:
    """Retry while etcd is away. ``done``: errors that mean an earlier attempt whose answer was
    lost did succeed (the create exists, the delete happened)."""
    with anyio.fail_after(30):
        while True:
            try:
                await operation()
            except done:
                return
            except StoreUnavailableError:
                await anyio.sleep(0.05)
            else:
                return


def watch_logs(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("kuma_etcd_store") and text in r.message]


async def restart(server: EtcdServer, client_port: int | None = None) -> None:
    await anyio.to_thread.run_sync(lambda: server.start(client_port=client_port))


async def test_kill9_mid_watch_loses_and_duplicates_nothing(
    etcd_factory: EtcdFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kuma_etcd_store")
    server = etcd_factory()
    async with (
        etcd_store(server.endpoint, PREFIX, **FAST) as store,
        etcd_store(server.endpoint, PREFIX, **FAST) as writer_store,
        raw_client(server.endpoint) as raw,
    ):
        for i in range(5):
            await store.create(dataplane(f"old-{i}"))
        async with store.watch() as events:
            snapshot, synced = await read_snapshot(events)
            assert len(snapshot) == 5
            written = 0

            async def writer() -> None:
                nonlocal written
                for i in range(60):
                    await retrying(partial(writer_store.create, dataplane(f"dp-{i}")),
                                   AlreadyExistsError)  # fmt: skip
                    if i % 4 == 3:
                        key = ResourceKey("Dataplane", "default", f"dp-{i - 1}")
                        await retrying(partial(writer_store.delete, key), NotFoundError)
                    written = i + 1

            async with anyio.create_task_group() as tg:
                tg.start_soon(writer)
                await eventually(lambda: written >= 15)
                server.kill9()
                await eventually(lambda: bool(watch_logs(caplog, "interrupted")))
                stalled_at = written
                # While the watch is cut off, etcd lives on elsewhere and records changes that
                # a re-list could not reproduce (keys created and deleted again).
                await restart(server, client_port=free_port())
                async with etcd_store(server.current_endpoint, PREFIX) as unseen:
                    for i in range(6):
                        created = await unseen.create(dataplane(f"unseen-{i}"))
                        if i % 2:
                            await unseen.delete(created.key)
                server.kill9()
                await restart(server)
            assert stalled_at < 60, "the writer never had to wait for etcd: nothing was tested"

            history = await etcd_history(raw, ROOT, synced.revision)
            assert len(history) == 60 + 15 + 9
            got = await read_events(events, len(history), within=20)
            await assert_quiet(events)
        assert [as_change(e) for e in got] == history
        for event in got:
            if event.operation is not Operation.DELETE:
                assert event.meta.version == str(event.revision)
        assert not watch_logs(caplog, "re-listed"), "resumed by re-listing, not from history"


async def test_frozen_etcd_is_detected_by_keepalive_and_the_watch_resumes(
    etcd_factory: EtcdFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = etcd_factory()
    async with (
        etcd_store(server.endpoint, PREFIX, **FAST) as store,
        raw_client(server.endpoint) as raw,
    ):
        await store.create(dataplane("before"))
        async with store.watch() as events:
            _, synced = await read_snapshot(events)
            await store.create(dataplane("during"))
            during = await read_events(events, 1)
            server.sigstop()
            try:
                # Nothing but keepalive can notice: the process lives, its sockets stay open.
                await eventually(lambda: bool(watch_logs(caplog, "interrupted")), within=10)
                assert server.frozen
            finally:
                server.sigcont()
            await retrying(lambda: store.create(dataplane("after")), AlreadyExistsError)
            after = await read_events(events, 1, within=20)
            await assert_quiet(events)
            history = await etcd_history(raw, ROOT, synced.revision)
        assert [e.key.name for e in during + after] == ["during", "after"]
        assert [as_change(e) for e in during + after] == history


async def test_compaction_while_disconnected_emits_exactly_the_differences(
    etcd_factory: EtcdFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kuma_etcd_store")
    server = etcd_factory()
    async with etcd_store(server.endpoint, PREFIX, **FAST) as store:
        stored = {name: await store.create(dataplane(name)) for name in ("a", "b", "c")}
        async with store.watch() as events:
            _, synced = await read_snapshot(events)
            # Cut the watch off: the same etcd comes back on another port for a while.
            server.stop()
            elsewhere = free_port()
            await restart(server, client_port=elsewhere)
            async with (
                etcd_store(server.current_endpoint, PREFIX) as other,
                raw_client(server.current_endpoint) as raw,
            ):
                b = await other.update(dataplane("b", port=1), version=stored["b"].meta.version)
                b = await other.update(dataplane("b", port=2), version=b.meta.version)
                await other.delete(stored["c"].key)
                await other.create(dataplane("d"))
                e = await other.create(dataplane("e"))
                await other.delete(e.key)
                current = (await raw.get_prefix(ROOT, keys_only=True)).header.revision
                await raw.compact(current, physical=True)
            server.stop()
            await restart(server)

            # History replay would give 6 events; the differences are 3, in key order.
            got = await read_events(events, 3, within=20)
            await assert_quiet(events)
            assert [(e.operation, e.key.name) for e in got] == [
                (Operation.UPDATE, "b"),
                (Operation.DELETE, "c"),
                (Operation.CREATE, "d"),
            ]
            assert got[0].resource == dataplane("b", port=2)
            assert got[0].meta.version == b.meta.version
            assert got[1].meta == stored["c"].meta  # a DELETE carries the last known state
            revisions = [synced.revision] + [e.revision for e in got]
            assert revisions == sorted(set(revisions))
            assert watch_logs(caplog, "compacted")

            # And it goes on live from there.
            live = await store.create(dataplane("f"))
            (event,) = await read_events(events, 1)
            assert event.meta.version == live.meta.version
            assert event.revision > got[-1].revision


async def test_wiped_etcd_emits_the_differences_and_revisions_keep_increasing(
    etcd_factory: EtcdFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = etcd_factory()
    async with etcd_store(server.endpoint, PREFIX, **FAST) as store:
        for i in range(6):
            await store.create(dataplane(f"dp-{i}"))
        async with store.watch() as events:
            snapshot, synced = await read_snapshot(events)
            assert len(snapshot) == 6
            # A brand-new etcd (empty data dir), first written to where the watch cannot see.
            server.stop()
            await anyio.to_thread.run_sync(lambda: server.wipe(client_port=free_port()))
            async with etcd_store(server.current_endpoint, PREFIX) as other:
                await other.create(dataplane("dp-1", port=9999))
                await other.create(dataplane("new"))
            server.stop()
            await restart(server)

            got = await read_events(events, 7, within=20)
            await assert_quiet(events)
            assert [(e.operation, e.key.name) for e in got] == [
                (Operation.DELETE, "dp-0"),
                (Operation.UPDATE, "dp-1"),
                (Operation.DELETE, "dp-2"),
                (Operation.DELETE, "dp-3"),
                (Operation.DELETE, "dp-4"),
                (Operation.DELETE, "dp-5"),
                (Operation.CREATE, "new"),
            ]
            assert got[1].resource == dataplane("dp-1", port=9999)
            # etcd counts from 1 again; the consumer's revisions still only go up.
            assert got[-1].meta.version == "3"
            revisions = [synced.revision] + [e.revision for e in got]
            assert revisions == sorted(set(revisions))
            assert watch_logs(caplog, "wiped")

            live = await store.create(dataplane("later"))
            (event,) = await read_events(events, 1)
            assert event.meta.version == live.meta.version == "4"
            assert event.revision > got[-1].revision
