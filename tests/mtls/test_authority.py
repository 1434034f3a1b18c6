"""CaKeeper: the builtin CA is created once per mesh and backend (several instances on one
store, memory and real etcd), stored as Kuma's Secrets; provided CAs load from Secrets."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from kuma.mtls.authority import CaKeeper, MeshCa
from kuma.mtls.ca import generate_root
from kuma.mtls.ca_cleanup import GRACE
from kuma.mtls.issuer import issue, tag_set
from kuma.resources import Mesh, ResourceKey, Secret
from kuma.resources.mtls import BuiltinConf
from kuma.store import AlreadyExistsError, Store, open_store
from tests.fixtures.etcd import shared_store

pytestmark = pytest.mark.anyio


def mtls_mesh(name: str = "default", backend: dict[str, Any] | None = None) -> Mesh:
    backend = backend or {
        "name": "ca-1",
        "type": "builtin",
        "conf": {"caCert": {"keyType": "ECDSA"}},
    }
    return Mesh(name=name, mtls={"enabledBackend": backend["name"], "backends": [backend]})


class Reports:
    def __init__(self) -> None:
        self.cas: dict[str, MeshCa | None] = {}
        self.changed = anyio.Event()

    def __call__(self, mesh: str, ca: MeshCa | None) -> None:
        self.cas[mesh] = ca
        self.changed.set()

    async def wait(self, mesh: str, present: bool = True) -> MeshCa | None:
        with anyio.fail_after(20):
            while (self.cas.get(mesh) is not None) != present or (
                not present and mesh not in self.cas
            ):
                self.changed = anyio.Event()
                await self.changed.wait()
        return self.cas.get(mesh)


@asynccontextmanager
async def keepers(store: Store, count: int, grace: float = GRACE) -> AsyncIterator[list[Reports]]:
    reports = [Reports() for _ in range(count)]
    async with anyio.create_task_group() as tg:
        for r in reports:
            tg.start_soon(CaKeeper(store, r, cleanup_grace=grace).run)
        yield reports
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("kind", ["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
async def test_builtin_ca_is_created_once_by_racing_instances(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with shared_store(kind, request) as store:
        created: list[str] = []
        lost = 0
        create = store.create

        async def counting_create(resource: Any) -> Any:
            nonlocal lost
            try:
                stored = await create(resource)
            except AlreadyExistsError:
                lost += 1
                raise
            created.append(resource.name)
            return stored

        monkeypatch.setattr(store, "create", counting_create)
        await create(mtls_mesh())
        async with keepers(store, 3) as reports:
            cas = [await r.wait("default") for r in reports]
        assert created == ["default.ca-builtin-cert-ca-1", "default.ca-builtin-key-ca-1"]
        assert lost == 2, "the instances never raced: the test proved nothing"
        # Every instance uses the one stored CA.
        stored = await store.get(ResourceKey("Secret", "default", "default.ca-builtin-cert-ca-1"))
        assert isinstance(stored.resource, Secret)
        pems = {ca.authority.cert_pem for ca in cas if ca is not None}
        assert pems == {stored.resource.value}
        # A restart reuses it.
        async with keepers(store, 1) as (again,):
            ca = await again.wait("default")
        assert ca is not None
        assert ca.authority.cert_pem == stored.resource.value
        assert len(created) == 2


async def test_mtls_off_and_provided_ca() -> None:
    async with open_store("memory", {}) as store, keepers(store, 1) as (reports,):
        stored = await store.create(mtls_mesh())
        builtin = await reports.wait("default")
        assert builtin is not None
        # mTLS off: the CA goes (its Secrets stay, as in Kuma).
        off = mtls_mesh()
        assert off.mtls is not None
        await store.update(
            Mesh(name="default", mtls=off.mtls | {"enabledBackend": ""}),
            version=stored.meta.version,
        )
        assert await reports.wait("default", present=False) is None
        # A provided CA from the mesh's Secrets.
        root = generate_root("default", BuiltinConf(key_type="ECDSA"))
        await store.create(
            Secret(mesh="default", name="my-cert", data=base64.b64encode(root.cert_pem).decode())
        )
        await store.create(
            Secret(mesh="default", name="my-key", data=base64.b64encode(root.key_pem).decode())
        )
        current = await store.get(ResourceKey("Mesh", "", "default"))
        provided = {
            "name": "ca-2",
            "type": "provided",
            "conf": {"cert": {"secret": "my-cert"}, "key": {"secret": "my-key"}},
        }
        await store.update(mtls_mesh(backend=provided), version=current.meta.version)
        ca = await reports.wait("default")
        assert ca is not None
        assert ca.authority.cert_pem == root.cert_pem
        assert ca.backend.name == "ca-2"


async def test_unusable_provided_ca_gives_no_ca(caplog: pytest.LogCaptureFixture) -> None:
    root = generate_root("default", BuiltinConf(key_type="ECDSA"))
    leaf = issue(root, "default", tag_set([{"kuma.io/service": "x"}]), 60, now=0)
    async with open_store("memory", {}) as store, keepers(store, 1) as (reports,):
        await store.create(Mesh(name="other"))
        await store.create(
            Secret(mesh="default", name="c", data=base64.b64encode(leaf.cert_pem).decode())
        )
        await store.create(
            Secret(mesh="default", name="k", data=base64.b64encode(leaf.key_pem).decode())
        )
        provided = {
            "name": "ca-2",
            "type": "provided",
            "conf": {"cert": {"secret": "c"}, "key": {"secret": "k"}},
        }
        await store.create(mtls_mesh(backend=provided))
        with anyio.fail_after(10):
            while not any("not usable" in r.message for r in caplog.records):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert reports.cas.get("default") is None
        text = "\n".join(r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records)
        assert "basic constraint 'CA'" in text
        assert "PRIVATE KEY" not in text
