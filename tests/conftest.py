from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # asyncio only: the product runs on asyncio (grpclib, aetcd and watchfiles need it).
    return "asyncio"


# Fixtures that start real components (etcd, kuma-cp, Envoy) live in their own modules.
pytest_plugins = ["tests.fixtures.etcd", "tests.fixtures.diagnostics", "pytester"]
