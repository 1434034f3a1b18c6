"""Stores say when their problems change (``NotifiesProblems``): the GUI shows a broken file
or an invalid etcd value as it is written, although neither is a resource event."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from kuma.store import NotifiesProblems, Store, open_store
from tests.fixtures.etcd import EtcdServer
from tests.store.harness_etcd import raw_client

pytestmark = pytest.mark.anyio


class Notices:
    def __init__(self, store: Store) -> None:
        assert isinstance(store, NotifiesProblems)
        self.count = 0
        self.stop = store.on_problems_changed(self.heard)
        self._event = anyio.Event()

    def heard(self) -> None:
        self.count += 1
        self._event.set()

    async def next(self) -> None:
        with anyio.fail_after(10):
            await self._event.wait()
        self._event = anyio.Event()


def drop(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


async def test_directory_store_announces_a_broken_file_and_its_repair(tmp_path: Path) -> None:
    async with open_store("directory", {"path": str(tmp_path)}) as store:
        notices = Notices(store)
        drop(tmp_path / "mesh.yaml", "type: Mesh\nname: default\n")
        drop(tmp_path / "bad.yaml", "type: Mesh\nname: [\n")
        await notices.next()
        assert [p.where for p in store.problems()] == [str(tmp_path / "bad.yaml")]
        drop(tmp_path / "bad.yaml", "type: Mesh\nname: other\n")
        await notices.next()
        assert store.problems() == ()
        seen = notices.count
        notices.stop()
        still = Notices(store)
        drop(tmp_path / "bad.yaml", "type: Mesh\nname: [\n")
        await still.next()
        assert store.problems()
        assert notices.count == seen, "a stopped listener is not called again"


@pytest.mark.etcd
async def test_etcd_store_announces_an_invalid_value_and_its_repair(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    options = {"endpoints": [etcd_server.endpoint], "prefix": etcd_prefix}
    async with (
        open_store("etcd", options) as store,
        raw_client(etcd_server.endpoint) as raw,
        store.watch() as events,
    ):
        notices = Notices(store)

        async def follow() -> None:
            async for _ in events:
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            bad = f"{etcd_prefix}/Dataplane/default/bad".encode()
            await raw.put(bad, b"{not json")
            await notices.next()
            assert [p.where for p in store.problems()] == [bad.decode()]
            await raw.delete(bad)
            await notices.next()
            assert store.problems() == []
            tg.cancel_scope.cancel()
