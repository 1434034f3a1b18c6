"""Fixtures of the API tests: a memory store with Mesh ``default`` and the API over it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kuma.resources import Mesh
from kuma.store.memory import MemoryStore

from .helpers import Api, serve


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    store = MemoryStore()
    await store.create(Mesh(name="default"))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
async def api(store: MemoryStore) -> AsyncIterator[Api]:
    async with serve(store) as client:
        yield client
