"""Several kuma-cp processes on one real etcd."""

from __future__ import annotations

from pathlib import Path

import anyio

from kuma.resources import Mesh, ResourceKey
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.processes import kuma_cp
from tests.store.harness_etcd import etcd_store

from .test_kuma_cp import LOOPBACK


def etcd_env(server: EtcdServer, prefix: str) -> dict[str, str]:
    return {
        "KUMA_STORE_TYPE": "etcd",
        "KUMA_STORE_ETCD_ENDPOINTS": server.endpoint,
        "KUMA_STORE_ETCD_PREFIX": prefix,
        **LOOPBACK,
    }


def test_two_processes_create_the_default_mesh_once(
    etcd_server: EtcdServer, etcd_prefix: str, tmp_path: Path
) -> None:
    env = etcd_env(etcd_server, etcd_prefix)
    # Both start at the same time and race for the create.
    first, second = kuma_cp(None, env=env, cwd=tmp_path), kuma_cp(None, env=env, cwd=tmp_path)
    try:
        for cp in (first, second):
            cp.wait_for_line("kuma-cp is ready", timeout=60)
        assert (
            first.count("created the default mesh") + second.count("created the default mesh") == 1
        )

        async def meshes() -> list[str]:
            async with etcd_store(etcd_server.endpoint, etcd_prefix) as store:
                page = await store.list("Mesh")
                stored = await store.get(ResourceKey("Mesh", "", "default"))
                assert stored.resource == Mesh(name="default")
                return [s.key.name for s in page.items]

        assert anyio.run(meshes) == ["default"]
    finally:
        codes = [first.stop(), second.stop()]
    assert codes == [0, 0]


def test_a_restart_on_etcd_keeps_the_mesh_and_creates_nothing(
    etcd_server: EtcdServer, etcd_prefix: str, tmp_path: Path
) -> None:
    env = etcd_env(etcd_server, etcd_prefix)
    for run in range(2):
        cp = kuma_cp(None, env=env, cwd=tmp_path)
        try:
            cp.wait_for_line("kuma-cp is ready", timeout=60)
            assert cp.count("created the default mesh") == (1 if run == 0 else 0)
        finally:
            assert cp.stop() == 0


def test_two_processes_create_a_mesh_ca_once(
    etcd_server: EtcdServer, etcd_prefix: str, tmp_path: Path
) -> None:
    """Mesh mTLS with a builtin CA, two kuma-cp on one etcd: one certificate and one key
    Secret, written by one of them; both use that CA."""
    mesh = Mesh(
        name="secure",
        mtls={
            "enabledBackend": "ca-1",
            "backends": [
                {"name": "ca-1", "type": "builtin", "conf": {"caCert": {"RSAbits": 2048}}}
            ],
        },
    )

    async def create_mesh() -> None:
        async with etcd_store(etcd_server.endpoint, etcd_prefix) as store:
            await store.create(mesh)

    anyio.run(create_mesh)
    env = etcd_env(etcd_server, etcd_prefix)
    first, second = kuma_cp(None, env=env, cwd=tmp_path), kuma_cp(None, env=env, cwd=tmp_path)
    try:
        for cp in (first, second):
            cp.wait_for_line("kuma-cp is ready", timeout=60)

        async def secrets() -> list[str]:
            async with etcd_store(etcd_server.endpoint, etcd_prefix) as store:
                with anyio.fail_after(60):
                    while True:
                        page = await store.list("Secret", mesh="secure")
                        # (The mesh's dataplane-token signing key is a Secret too.)
                        names = sorted(s.key.name for s in page.items if ".ca-" in s.key.name)
                        if len(names) >= 2:
                            return names
                        await anyio.sleep(0.1)

        assert anyio.run(secrets) == ["secure.ca-builtin-cert-ca-1", "secure.ca-builtin-key-ca-1"]
        # Only one of them created it (the other lost the atomic create and wrote nothing).
        assert first.count("CA created") + second.count("CA created") == 1
        for cp in (first, second):
            assert "PRIVATE KEY" not in cp.output()
    finally:
        codes = [first.stop(), second.stop()]
    assert codes == [0, 0]
