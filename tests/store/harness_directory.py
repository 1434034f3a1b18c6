"""The directory store on a fresh temporary folder, and helpers for the directory store's tests."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from kuma.resources import Dataplane, Mesh, ResourceKey, StoredResource, decode_one
from kuma.store import NotFoundError, Operation, Store, WatchItem, open_store

from .watching import read_events

#: Short enough to keep the suites fast, long enough to merge an editor's write-then-rename.
TEST_DEBOUNCE_MS = 20


@asynccontextmanager
async def open_directory(folder: Path, **options: Any) -> AsyncIterator[Store]:
    """The directory store on ``folder``, opened by name through the entry point."""
    settings: Mapping[str, Any] = {"path": str(folder), "debounceMs": TEST_DEBOUNCE_MS, **options}
    async with open_store("directory", settings) as store:
        yield store


@asynccontextmanager
async def open_store_for_test(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Store]:
    async with open_directory(tmp_path / "resources") as store:
        yield store


def dataplane_yaml(name: str, port: int = 8080, mesh: str = "default", service: str = "web") -> str:
    return f"""type: Dataplane
mesh: {mesh}
name: {name}
networking:
  address: 10.0.0.1
  inbound:
  - port: {port}
    servicePort: 80
    tags:
      kuma.io/service: {service}
"""


def dataplane(
    name: str, port: int = 8080, mesh: str = "default", service: str = "web"
) -> Dataplane:
    resource = decode_one(dataplane_yaml(name, port, mesh, service))
    assert isinstance(resource, Dataplane)
    return resource


async def wait_until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds."""
    with anyio.fail_after(within):
        while True:
            if condition():
                return
            await anyio.sleep(0.005)


async def get_eventually(store: Store, key: ResourceKey, within: float = 10.0) -> StoredResource:
    """The resource at ``key`` once the store has it; fail after ``within`` seconds."""
    with anyio.fail_after(within):
        while True:
            try:
                return await store.get(key)
            except NotFoundError:
                await anyio.sleep(0.005)


_sentinels = itertools.count()


async def expect_nothing_before_sentinel(
    folder: Path, events: AsyncIterator[WatchItem], within: float = 10.0
) -> None:
    """Prove that the watcher has nothing more to say about earlier changes: drop a new file and
    require its CREATE to be the very next event. (Files of one batch are applied in path order
    and the sentinel's name sorts last, so an earlier change cannot hide behind it.)"""
    name = f"sentinel-{next(_sentinels)}"
    (folder / f"zzz-{name}.yaml").write_text(f"type: Mesh\nname: {name}\n")
    (event,) = await read_events(events, 1, within=within)
    assert (event.operation, event.resource) == (Operation.CREATE, Mesh(name=name)), event
