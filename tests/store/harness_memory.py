from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from kuma.store import Store, open_store


@asynccontextmanager
async def open_store_for_test(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Store]:
    async with open_store("memory", {}) as store:
        yield store
