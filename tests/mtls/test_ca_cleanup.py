"""Builtin CA Secrets nobody can use are removed exactly once across instances: a deleted
mesh's (as Kuma's owner references do) and a certificate whose creator died before storing
the key (after which the mesh gets a fresh, consistent pair)."""

from __future__ import annotations

import base64
from typing import Any

import anyio
import pytest

from kuma.mtls.authority import CaKeeper
from kuma.mtls.ca import CertificateAuthority, generate_root
from kuma.mtls.ca_cleanup import CaSecretCleaner
from kuma.resources import Mesh, ResourceKey, Secret
from kuma.resources.mtls import BuiltinConf
from kuma.store import (
    ConflictError,
    NotFoundError,
    Operation,
    ResourceEvent,
    Store,
    open_store,
)
from tests.fixtures.etcd import shared_store

from .test_authority import Reports, keepers, mtls_mesh

pytestmark = pytest.mark.anyio

CERT = ResourceKey("Secret", "default", "default.ca-builtin-cert-ca-1")
KEY = ResourceKey("Secret", "default", "default.ca-builtin-key-ca-1")


async def ca_secrets(store: Store) -> list[str]:
    listed = await store.list("Secret", "default")
    return sorted(item.resource.name for item in listed.items)


async def wait_for(store: Store, wanted: list[str]) -> None:
    # Checked after every store event (the watch's snapshot ends with Synced, so at least once).
    with anyio.fail_after(20):
        async with store.watch() as events:
            async for _ in events:
                if await ca_secrets(store) == wanted:
                    return


def count_deletes(store: Store, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"removed": 0, "lost": 0}
    delete = store.delete

    async def counting(key: ResourceKey, *, version: str | None = None) -> None:
        try:
            await delete(key, version=version)
        except (NotFoundError, ConflictError):
            counts["lost"] += 1
            raise
        counts["removed"] += 1

    monkeypatch.setattr(store, "delete", counting)
    return counts


@pytest.mark.parametrize("kind", ["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
async def test_a_deleted_meshs_ca_is_removed_once_and_a_new_mesh_keeps_its_new_ca(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with shared_store(kind, request) as store:
        counts = count_deletes(store, monkeypatch)
        await store.create(mtls_mesh())
        async with keepers(store, 3, grace=1.0) as reports:
            first = [await r.wait("default") for r in reports]
            await wait_for(store, [CERT.name, KEY.name])
            await store.delete(ResourceKey("Mesh", "", "default"))
            await wait_for(store, [])
            for r in reports:
                await r.wait("default", present=False)
            assert counts["removed"] == 3  # the Mesh, then its two Secrets, each once
            # The mesh comes back: a new CA, which no instance removes.
            await store.create(mtls_mesh())
            second = [await r.wait("default") for r in reports]
            await wait_for(store, [CERT.name, KEY.name])
            stored = (await store.get(CERT)).resource
            assert isinstance(stored, Secret)
            assert {ca.authority.cert_pem for ca in second if ca is not None} == {stored.value}
            assert stored.value != first[0].authority.cert_pem if first[0] else False
        assert counts["removed"] == 3


async def test_orphaned_ca_secrets_are_removed_at_start() -> None:
    # A mesh deleted while no kuma-cp ran: its CA is cleaned when one starts.
    async with open_store("memory", {}) as store:
        await store.create(Secret(mesh="default", name=CERT.name, data="Y2VydA=="))
        await store.create(Secret(mesh="default", name="user-secret", data="dXNlcg=="))
        async with keepers(store, 1, grace=0.0):
            await wait_for(store, ["user-secret"])


class Crash(Exception):
    """The CA's creator dies between storing the certificate and the key."""


async def test_a_certificate_without_its_key_is_replaced_by_a_consistent_pair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with open_store("memory", {}) as store:
        await store.create(mtls_mesh())
        create = store.create

        async def crash_before_the_key(resource: Any) -> Any:
            if isinstance(resource, Secret) and resource.name == KEY.name:
                raise Crash
            return await create(resource)

        monkeypatch.setattr(store, "create", crash_before_the_key)
        with pytest.raises(ExceptionGroup) as crashed:
            async with anyio.create_task_group() as tg:
                tg.start_soon(CaKeeper(store, Reports()).run)
        assert crashed.group_contains(Crash)
        orphan = await store.get(CERT)
        assert await ca_secrets(store) == [CERT.name]
        monkeypatch.setattr(store, "create", create)

        counts = count_deletes(store, monkeypatch)
        async with keepers(store, 2, grace=1.0) as reports:
            cas = [await r.wait("default") for r in reports]
        assert counts["removed"] == 1  # the orphaned certificate, once
        cert, key = (await store.get(CERT)).resource, (await store.get(KEY)).resource
        assert isinstance(cert, Secret)
        assert isinstance(key, Secret)
        assert cert.value != orphan.resource.value if isinstance(orphan.resource, Secret) else False
        # The pair is consistent (the key matches the certificate) and both instances use it.
        CertificateAuthority.from_pem(cert.value, key.value)
        assert {ca.authority.cert_pem for ca in cas if ca is not None} == {cert.value}
        assert isinstance(await store.get(ResourceKey("Mesh", "", "default")), object)
        assert isinstance((await store.get(ResourceKey("Mesh", "", "default"))).resource, Mesh)


async def test_a_key_without_its_certificate_is_replaced_with_the_new_certificates_key() -> None:
    # What a creator stalled past the grace leaves: its certificate removed, its key written.
    stale = generate_root("default", BuiltinConf(key_type="ECDSA"))
    async with open_store("memory", {}) as store:
        await store.create(Secret(mesh="default", name=KEY.name, data=_b64(stale.key_pem)))
        await store.create(mtls_mesh())
        async with keepers(store, 1, grace=1.0) as (report,):
            ca = await report.wait("default")
        cert, key = (await store.get(CERT)).resource, (await store.get(KEY)).resource
        assert isinstance(cert, Secret)
        assert isinstance(key, Secret)
        assert key.value != stale.key_pem
        CertificateAuthority.from_pem(cert.value, key.value)
        assert ca is not None
        assert ca.authority.cert_pem == cert.value


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


async def test_a_secret_another_instance_removes_during_a_pass_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CI failure of 2026-12-04 (etcd): while a pass awaited its first delete, the watch
    saw another instance remove the second Secret; the pass then looked it up and crashed the
    keeper with a KeyError. It must skip what is already gone."""
    async with open_store("memory", {}) as store:
        cleaner = CaSecretCleaner(store, grace=0.0)
        stored = [
            await store.create(Secret(mesh="default", name=key.name, data="eA=="))
            for key in (CERT, KEY)
        ]
        for item in stored:
            cleaner.observe(ResourceEvent(Operation.CREATE, item.resource, item.meta, 1))
        delete = store.delete
        deleted: list[str] = []

        async def delete_and_see_the_other_go(key: ResourceKey, *, version: str | None) -> None:
            await delete(key, version=version)
            deleted.append(key.name)
            other = stored[1] if key == CERT else stored[0]
            cleaner.observe(ResourceEvent(Operation.DELETE, other.resource, other.meta, 2))

        monkeypatch.setattr(store, "delete", delete_and_see_the_other_go)
        assert await cleaner.clean("default", None, ()) is None
        assert len(deleted) == 1
