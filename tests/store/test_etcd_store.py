"""What the contract suite cannot see of the etcd store: its configuration, what it leaves in
etcd, values written behind its back, several stores on one etcd, and its server-side watchers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest

from kuma.resources import Dataplane, Mesh, ResourceKey, encode_json
from kuma.store import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    Operation,
    Problem,
    StoreConfigError,
    StoreUnavailableError,
    open_store,
)
from kuma_etcd_store import parse_options
from kuma_etcd_store.follow import grpc_call_tasks
from tests.fixtures.etcd import EtcdServer

from .harness_etcd import dataplane, etcd_store, eventually, raw_client
from .watching import assert_quiet, read_events, read_snapshot

pytestmark = [pytest.mark.anyio, pytest.mark.etcd]


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({}, "store.etcd.endpoints"),
        ({"endpoints": []}, "store.etcd.endpoints"),
        ({"endpoints": ["127.0.0.1:2379"]}, "store.etcd.endpoints"),
        ({"endpoints": ["https://127.0.0.1:2379"]}, "store.etcd.endpoints"),
        ({"endpoints": ["http://a:2379", "http://b:2379"]}, "store.etcd.endpoints"),
        ({"endpoints": ["http://127.0.0.1:2379"], "prefix": "kuma"}, "store.etcd.prefix"),
        ({"endpoints": ["http://127.0.0.1:2379"], "prefix": "/"}, "store.etcd.prefix"),
        (
            {"endpoints": ["http://127.0.0.1:2379"], "keepalive_time": 0},
            "store.etcd.keepalive_time",
        ),
        ({"endpoints": ["http://127.0.0.1:2379"], "request_timeout": "5s"}, "request_timeout"),
        ({"endpoints": ["http://127.0.0.1:2379"], "page_size": True}, "store.etcd.page_size"),
        ({"endpoints": ["http://127.0.0.1:2379"], "endpoint": "x"}, "store.etcd.endpoint"),
    ],
)
async def test_bad_options_name_the_key(options: dict[str, Any], named: str) -> None:
    with pytest.raises(StoreConfigError, match=named.replace(".", r"\.")):
        async with open_store("etcd", options):
            pass


def test_options_and_grpc_target() -> None:
    one = parse_options({"endpoints": ["http://etcd.local"], "prefix": "/mesh/"})
    assert one.grpc_target == ("etcd.local", 2379)
    assert one.prefix == "/mesh"
    several = parse_options({"endpoints": ["http://10.0.0.1:2379", "http://10.0.0.2:2380"]})
    host, port = several.grpc_target
    # aetcd joins them as host:port, which must give gRPC's multi-address target.
    assert f"{host}:{port}" == "ipv4:10.0.0.1:2379,10.0.0.2:2380"
    options = one.channel_options()
    assert options["grpc.keepalive_time_ms"] == 6000
    assert options["grpc.http2.ping_timeout_ms"] == options["grpc.keepalive_timeout_ms"] == 3000


# --- what the store leaves in etcd ---------------------------------------------------------------


async def test_key_layout_and_value(etcd_server: EtcdServer, etcd_prefix: str) -> None:
    async with (
        etcd_store(etcd_server.endpoint, etcd_prefix) as store,
        raw_client(etcd_server.endpoint) as raw,
    ):
        stored = await store.create(dataplane("web-1"))
        await store.create(Mesh(name="demo"))
        got = await raw.get(f"{etcd_prefix}/Dataplane/default/web-1".encode())
        assert got is not None
        assert str(got.mod_revision) == stored.meta.version
        doc = orjson.loads(got.value)
        assert (doc["type"], doc["mesh"], doc["name"]) == ("Dataplane", "default", "web-1")
        assert doc["creationTime"] == doc["modificationTime"]
        assert await raw.get(f"{etcd_prefix}/Mesh/demo".encode()) is not None


async def test_list_order_is_mesh_then_name_not_key_order(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async with etcd_store(etcd_server.endpoint, etcd_prefix) as store:
        # In etcd, ".../a-b/y" sorts before ".../a/x" ('-' < '/').
        for mesh, name in [("a-b", "y"), ("a", "x"), ("a", "z")]:
            await store.create(dataplane(name, mesh=mesh))
        expected = [("a", "x"), ("a", "z"), ("a-b", "y")]
        full = await store.list("Dataplane")
        assert [(s.key.mesh, s.key.name) for s in full.items] == expected
        paged: list[tuple[str, str]] = []
        offset: str | None = None
        while True:
            page = await store.list("Dataplane", limit=1, offset=offset)
            paged += [(s.key.mesh, s.key.name) for s in page.items]
            if (offset := page.next_offset) is None:
                break
        assert paged == expected
        assert [s.key.name for s in (await store.list("Dataplane", "a")).items] == ["x", "z"]
        await store.create(Mesh(name="a"))
        assert (await store.list("Mesh", "a")).items == ()
        assert (await store.list("Mesh", "a", limit=5)).items == ()
        assert [s.key.name for s in (await store.list("Mesh", limit=5)).items] == ["a"]


# --- values written behind the store's back ------------------------------------------------


async def test_invalid_values_are_reported_skipped_and_cleared(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async with (
        etcd_store(etcd_server.endpoint, etcd_prefix) as store,
        raw_client(etcd_server.endpoint) as raw,
    ):
        served = await store.create(dataplane("served"))
        async with store.watch() as events:
            await read_snapshot(events)
            bad = f"{etcd_prefix}/Dataplane/default/bad"
            await raw.put(bad.encode(), b"{not json")
            await raw.put(f"{etcd_prefix}/Dataplane/default/other".encode(),
                          encode_json(dataplane("elsewhere")))  # fmt: skip
            await raw.put(f"{etcd_prefix}/Gateway/x".encode(), b"{}")
            # The watch goes on: a valid change after the junk arrives, and only it.
            await store.create(dataplane("after"))
            (event,) = await read_events(events, 1)
            assert event.key.name == "after"
            problems = {p.where: p.reason for p in store.problems()}
            assert set(problems) == {
                bad,
                f"{etcd_prefix}/Dataplane/default/other",
                f"{etcd_prefix}/Gateway/x",
            }
            assert "not JSON" in problems[bad]
            assert (
                "Dataplane default/elsewhere" in problems[f"{etcd_prefix}/Dataplane/default/other"]
            )
            assert "unknown resource type 'Gateway'" in problems[f"{etcd_prefix}/Gateway/x"]
            assert {s.key.name for s in (await store.list("Dataplane")).items} == {
                "served",
                "after",
            }
            with pytest.raises(NotFoundError):
                await store.get(ResourceKey("Dataplane", "default", "bad"))

            # A valid value repairs the key; a served resource turning invalid is withdrawn.
            fixed = await store.update(
                dataplane("bad"), version=str((await raw.get(bad.encode())).mod_revision)
            )
            await raw.put(f"{etcd_prefix}/Dataplane/default/served".encode(), b"[]")
            got = await read_events(events, 2)
            assert [(e.operation, e.key.name) for e in got] == [
                (Operation.CREATE, "bad"),
                (Operation.DELETE, "served"),
            ]
            assert got[0].meta.version == fixed.meta.version
            assert got[1].meta == served.meta
            assert bad not in {p.where for p in store.problems()}
            assert (
                Problem(
                    f"{etcd_prefix}/Dataplane/default/served", "value is a JSON list, not an object"
                )
                in store.problems()
            )
            await assert_quiet(events)

        # A new watch's snapshot skips what is invalid.
        async with store.watch() as events:
            snapshot, _ = await read_snapshot(events)
            assert {e.key.name for e in snapshot} == {"after", "bad"}


async def test_one_etcd_transaction_of_several_keys_still_gives_increasing_revisions(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async with (
        etcd_store(etcd_server.endpoint, etcd_prefix) as store,
        raw_client(etcd_server.endpoint) as raw,
        store.watch() as events,
    ):
        _, synced = await read_snapshot(events)
        # Written by hand, without the times the store would add (they are optional).
        puts = [
            raw.transactions.put(
                f"{etcd_prefix}/Dataplane/default/{name}".encode(), encode_json(dataplane(name))
            )
            for name in ("one", "two")
        ]
        await raw.transaction(compare=[], success=puts, failure=[])
        later = await store.create(dataplane("three"))
        got = await read_events(events, 3)
        assert [e.key.name for e in got] == ["one", "two", "three"]
        assert got[0].meta.version == got[1].meta.version  # one etcd revision
        revisions = [synced.revision] + [e.revision for e in got]
        assert revisions == sorted(set(revisions))
        assert got[2].meta.version == later.meta.version
        assert got[0].meta.creation_time.year == 1970


# --- several stores (kuma-cp instances) on one etcd ----------------------------------------


async def test_two_stores_agree_and_race_with_compare_and_swap(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async with (
        etcd_store(etcd_server.endpoint, etcd_prefix) as first,
        etcd_store(etcd_server.endpoint, etcd_prefix) as second,
    ):
        # Both create the same key at once: exactly one wins.
        outcomes: list[str] = []

        async def create(store: Any) -> None:
            try:
                await store.create(dataplane("counter", port=1000))
                outcomes.append("created")
            except AlreadyExistsError:
                outcomes.append("exists")

        async with anyio.create_task_group() as tg:
            tg.start_soon(create, first)
            tg.start_soon(create, second)
        assert sorted(outcomes) == ["created", "exists"]

        key = ResourceKey("Dataplane", "default", "counter")
        conflicts = 0

        async def increment(store: Any, times: int) -> None:
            nonlocal conflicts
            for _ in range(times):
                while True:
                    current = await store.get(key)
                    port = current.resource.networking.inbound[0].port
                    await anyio.lowlevel.checkpoint()
                    try:
                        await store.update(dataplane("counter", port=port + 1),
                                           version=current.meta.version)  # fmt: skip
                        break
                    except ConflictError:
                        conflicts += 1

        async with anyio.create_task_group() as tg:
            for store in (first, second, first, second):
                tg.start_soon(increment, store, 5)
        for store in (first, second):
            final = (await store.get(key)).resource
            assert isinstance(final, Dataplane)
            assert final.networking is not None
            assert final.networking.inbound[0].port == 1000 + 20
        assert conflicts > 0, "the writers never raced: the test proved nothing"
        version = (await first.get(key)).meta.version
        assert (await second.get(key)).meta.version == version


# --- server-side watchers and closing -----------------------------------------------------------


WATCHERS = "etcd_debugging_mvcc_watcher_total"


async def test_closing_a_watch_cancels_its_server_side_watcher(
    etcd_factory: Callable[[], EtcdServer],
) -> None:
    server = etcd_factory()
    async with etcd_store(server.endpoint, "/kuma") as store:
        baseline = server.metric(WATCHERS)
        async with store.watch() as events:
            await read_snapshot(events)
            await eventually(lambda: server.metric(WATCHERS) == baseline + 1)
        # Nothing of the stream is left for gRPC to finish later (on a closed event loop).
        assert not grpc_call_tasks()
        await eventually(lambda: server.metric(WATCHERS) == baseline)

        # Also when the consumer is cancelled while waiting for an event.
        with anyio.move_on_after(0.5):
            async with store.watch() as events:
                await read_snapshot(events)
                await anext(events)
        await eventually(lambda: server.metric(WATCHERS) == baseline)

        # Closing the store ends open watches (the consumer sees the end, not an error).
        async with store.watch() as events:
            await read_snapshot(events)
            await eventually(lambda: server.metric(WATCHERS) == baseline + 1)
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.close)
                with anyio.fail_after(5):
                    assert [item async for item in events] == []
        await eventually(lambda: server.metric(WATCHERS) == baseline)
        with pytest.raises(StoreUnavailableError):
            await store.get(ResourceKey("Mesh", "", "x"))


async def test_store_opened_before_etcd_is_up_syncs_once_it_is(
    etcd_factory: Callable[[], EtcdServer],
) -> None:
    server = etcd_factory()
    server.stop()
    options = {"max_retry_backoff": 0.2, "request_timeout": 0.5}
    async with etcd_store(server.endpoint, "/kuma", **options) as store:
        with pytest.raises(StoreUnavailableError):
            await store.get(ResourceKey("Mesh", "", "x"))
        async with store.watch() as events:
            await anyio.to_thread.run_sync(server.start)
            snapshot, _ = await read_snapshot(events)
            assert snapshot == []
            created = await store.create(Mesh(name="demo"))
            (event,) = await read_events(events, 1)
            assert event.meta == created.meta
