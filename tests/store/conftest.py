"""The store contract fixtures: every test in test_contract.py runs against every store.

Each store kind has a module ``tests/store/harness_<kind>.py`` with
``open_store_for_test(request, tmp_path)``: an async context manager yielding a fresh, empty
store of that kind (backed by a real etcd for ``etcd``).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kuma.store import Store

STORE_KINDS = ("memory", "directory", "etcd")


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Store]:
    harness = importlib.import_module(f"tests.store.harness_{store_kind}")
    async with harness.open_store_for_test(request, tmp_path) as opened:
        yield opened
