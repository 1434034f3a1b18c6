"""The etcd store for the contract suite (the session's etcd, a prefix of the test's own), and
helpers of the etcd tests: a raw aetcd client and etcd's own history of a prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aetcd
import anyio
import pytest

from kuma.resources import Dataplane, decode_one
from kuma.store import Store, open_store
from kuma_etcd_store import EtcdStore
from tests.fixtures.etcd import EtcdServer


@asynccontextmanager
async def open_store_for_test(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Store]:
    server: EtcdServer = request.getfixturevalue("etcd_server")
    prefix: str = request.getfixturevalue("etcd_prefix")
    async with open_store("etcd", {"endpoints": [server.endpoint], "prefix": prefix}) as store:
        yield store


@asynccontextmanager
async def etcd_store(endpoint: str, prefix: str, **options: Any) -> AsyncIterator[EtcdStore]:
    """An etcd store (typed as such, for the tests that look at its etcd side)."""
    config: Mapping[str, Any] = {"endpoints": [endpoint], "prefix": prefix, **options}
    async with open_store("etcd", config) as store:
        assert isinstance(store, EtcdStore)
        yield store


@asynccontextmanager
async def raw_client(endpoint: str) -> AsyncIterator[aetcd.Client]:
    """A plain aetcd client: what etcdctl or another program would do behind the store's back."""
    url = urlsplit(endpoint)
    client = aetcd.Client(host=url.hostname or "127.0.0.1", port=url.port or 2379, timeout=5)
    try:
        yield client
    finally:
        await client.close()


def dataplane(name: str, mesh: str = "default", port: int = 8080) -> Dataplane:
    resource = decode_one(
        f"""
type: Dataplane
mesh: {mesh}
name: {name}
networking:
  address: 10.0.0.1
  inbound:
  - port: {port}
    servicePort: 80
    tags:
      kuma.io/service: web
"""
    )
    assert isinstance(resource, Dataplane)
    return resource


async def eventually(condition: Callable[[], bool], within: float = 15.0) -> None:
    """Wait until ``condition()`` holds (it polls something outside the loop: a log, etcd's
    metrics, a counter), failing after ``within`` seconds."""
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110 - nothing to wait on but the condition itself
            await anyio.sleep(0.02)


@dataclass(frozen=True)
class Change:
    """One change of a key as etcd recorded it (or as a watch reported it)."""

    kind: str  # PUT or DELETE
    key: bytes
    revision: int


async def etcd_history(client: aetcd.Client, prefix: bytes, after: int) -> list[Change]:
    """Every change under ``prefix`` after revision ``after``, read from etcd's own history (a
    fresh watch from ``after + 1`` up to the current revision). Needs an etcd where nothing but
    this prefix is written, so that the last event's revision is the cluster's revision."""
    current = (await client.get_prefix(prefix, keys_only=True)).header.revision
    changes: list[Change] = []
    if current <= after:
        return changes
    watch = await client.watch_prefix(prefix, start_revision=after + 1)
    try:
        with anyio.fail_after(10):
            async for event in watch:
                changes.append(Change(event.kind, event.kv.key, event.kv.mod_revision))
                if event.kv.mod_revision >= current:
                    break
    finally:
        await watch.cancel()
    return changes
