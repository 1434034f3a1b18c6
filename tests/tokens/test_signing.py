"""Signing keys in the store: one per mesh however many instances race, none added beside a
rotated key, removed with the mesh; tokens issued with the newest key."""

from __future__ import annotations

import anyio
import pytest

from kuma.resources import Mesh, ResourceKey, Secret
from kuma.store import Operation, ResourceEvent
from kuma.store.memory import MemoryStore
from kuma.tokens.claims import DataplaneIdentity, header_kid
from kuma.tokens.keyring import TokenKeys
from kuma.tokens.signing import (
    NoSigningKey,
    TokenSecrets,
    ensure_dataplane_signing_key,
    issue_dataplane_token,
)
from tests.store.harness_directory import wait_until as until
from tests.store.watching import read_snapshot

from .helpers import key, signing_secret

pytestmark = pytest.mark.anyio


async def names(store: MemoryStore, mesh: str) -> list[str]:
    return [i.resource.name for i in (await store.list(Secret.TYPE, mesh)).items]


async def test_racing_instances_create_one_key() -> None:
    store = MemoryStore()
    await store.create(Mesh(name="default"))
    created: list[bool] = []

    async def one() -> None:
        created.append(await ensure_dataplane_signing_key(store, "default"))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert created.count(True) == 1
    assert await names(store, "default") == ["dataplane-token-signing-key-default-1"]


async def test_the_newest_key_signs_and_a_rotated_mesh_gets_no_new_key_one() -> None:
    store = MemoryStore()
    await store.create(Mesh(name="default"))
    with pytest.raises(NoSigningKey, match="dataplane-token-signing-key-default-<serial>"):
        await issue_dataplane_token(store, DataplaneIdentity(mesh="default"), 60)
    await store.create(signing_secret("default", "2", key(2)))
    await store.create(signing_secret("default", "10", key(1)))
    assert not await ensure_dataplane_signing_key(store, "default")
    token = await issue_dataplane_token(store, DataplaneIdentity(mesh="default"), 60)
    assert header_kid(token) == "10"


async def test_keys_follow_meshes() -> None:
    store = MemoryStore()
    keys = TokenKeys()
    async with anyio.create_task_group() as tg:
        await tg.start(TokenSecrets(store, keys).run)
        await store.create(Mesh(name="demo"))
        await until(lambda: keys.public_key("demo", "1") is not None)
        assert await names(store, "demo") == ["dataplane-token-signing-key-demo-1"]
        async with store.watch() as events:
            await read_snapshot(events)
            await store.delete(ResourceKey("Mesh", "", "demo"))
            with anyio.fail_after(10):
                async for item in events:
                    if isinstance(item, ResourceEvent) and item.key.type == Secret.TYPE:
                        assert item.operation is Operation.DELETE
                        break
        assert await names(store, "demo") == []
        assert keys.public_key("demo", "1") is None
        tg.cancel_scope.cancel()
