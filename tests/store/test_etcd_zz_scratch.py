from __future__ import annotations
import anyio, pytest
from tests.fixtures.etcd import EtcdServer
from .harness_etcd import etcd_store

pytestmark = pytest.mark.anyio


async def test_after(etcd_server: EtcdServer) -> None:
    async with etcd_store(etcd_server.endpoint, "/zz") as store:
        for _ in range(30):
            await store.list("Mesh")
            await anyio.sleep(0.1)
