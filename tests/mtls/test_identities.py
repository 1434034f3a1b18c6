"""Issuing, rotation (one heap, jitter), batching and the SDS source, on a fake clock."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise

import anyio
import anyio.lowlevel
import pytest
from cryptography import x509
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from kuma.mtls.authority import MeshCa, backend_identity
from kuma.mtls.ca import CertificateAuthority, generate_root
from kuma.mtls.identities import Identities, Need
from kuma.mtls.schedule import RotationSchedule, rotation_time
from kuma.mtls.sds import MtlsSecretSource
from kuma.mtls.service import MtlsService
from kuma.resources import from_document
from kuma.resources.mtls import BuiltinConf, CaBackend, DpCert, Rotation
from kuma.store import open_store
from kuma.xds.generate import types


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def authority() -> CertificateAuthority:
    return generate_root("default", BuiltinConf(key_type="ECDSA"))


def mesh_ca(authority: CertificateAuthority, lifetime: str = "1h", name: str = "ca") -> MeshCa:
    backend = CaBackend(
        name=name, type="builtin", dp_cert=DpCert(rotation=Rotation(expiration=lifetime))
    )
    return MeshCa("default", backend_identity(backend), authority)


WEB = Need.of("default", {"kuma.io/service": ["web"], "version": ["v1"]})


def test_schedule_orders_and_replaces() -> None:
    schedule = RotationSchedule()
    schedule.schedule("a", 10)
    schedule.schedule("b", 5)
    schedule.schedule("a", 3)  # replaces the first entry
    assert schedule.next_due() == 3
    assert schedule.pop_due(4) == ["a"]
    assert schedule.pop_due(100) == ["b"]
    assert schedule.pop_due(1000) == []
    assert len(schedule) == 0
    schedule.schedule("c", 1)
    schedule.cancel("c")
    assert schedule.next_due() is None


def test_rotation_is_spread_before_eighty_percent() -> None:
    rng = random.Random(7)
    times = [rotation_time(0, 1000, rng) for _ in range(10_000)]
    assert min(times) >= 700
    assert max(times) <= 800
    # 10,000 certificates issued together spread over the window (no second holds more than
    # a few percent of them).
    per_second = Counter(int(t) for t in times)
    assert len(per_second) == 100
    assert max(per_second.values()) < 200


def test_issue_on_need_and_ca(authority: CertificateAuthority) -> None:
    clock = Clock()
    changed: list[str] = []
    ids = Identities(clock=clock, on_change=changed.extend)
    ids.set_need("default.web-1", WEB)
    assert ids.issue_pending() == []  # no CA yet
    ca = mesh_ca(authority)
    ids.set_ca("default", ca)
    assert ids.issue_pending() == ["default.web-1"]
    issued = ids.issued("default.web-1")
    assert issued is not None
    assert issued.sans[0] == "spiffe://default/web"
    assert issued.backend == "ca"
    assert 0.7 * 3600 <= issued.rotate_at - issued.issued_at <= 0.8 * 3600
    # Same need again: nothing to do.
    ids.set_need("default.web-1", WEB)
    assert ids.pending == 0
    # New tags: re-issued, and the old certificate is served meanwhile.
    ids.set_need("default.web-1", Need.of("default", {"kuma.io/service": ["web"]}))
    assert ids.issued("default.web-1") is issued
    assert ids.issue_pending() == ["default.web-1"]
    second = ids.issued("default.web-1")
    assert second is not None
    assert second.generation == 1
    assert second.sans == ("spiffe://default/web", "kuma://kuma.io/service/web")


def test_rotation_from_the_heap(authority: CertificateAuthority) -> None:
    clock = Clock()
    ids = Identities(clock=clock)
    ids.set_ca("default", mesh_ca(authority, "60s"))
    for i in range(5):
        ids.set_need(f"default.web-{i}", WEB)
    assert len(ids.issue_pending(budget=10)) == 5
    assert ids.rotate_due() == 0
    clock.now += 41  # before 70 % of 60 s: nothing due
    assert ids.rotate_due() == 0
    clock.now += 8  # past 80 %: all due
    assert ids.rotate_due() == 5
    before = {n: ids.issued(n) for n in (f"default.web-{i}" for i in range(5))}
    assert all(before.values())  # still served while being replaced
    assert len(ids.issue_pending(budget=10)) == 5
    for node_id, old in before.items():
        new = ids.issued(node_id)
        assert new is not None
        assert old is not None
        assert new.secret.version != old.secret.version
        assert new.generation == old.generation + 1
    assert ids.scheduled == 5


def test_ca_change_reissues_the_mesh_only(authority: CertificateAuthority) -> None:
    ids = Identities(clock=Clock())
    ids.set_ca("default", mesh_ca(authority))
    ids.set_need("default.a", WEB)
    ids.set_need("other.b", Need.of("other", {"kuma.io/service": ["b"]}))
    ids.issue_pending(budget=10)
    assert ids.issued("other.b") is None  # no CA for mesh other
    new_ca = mesh_ca(generate_root("default", BuiltinConf(key_type="ECDSA")))
    ids.set_ca("default", new_ca)
    assert ids.pending == 1
    ids.issue_pending(budget=10)
    issued = ids.issued("default.a")
    assert issued is not None
    assert issued.ca is new_ca
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    cert.verify_directly_issued_by(new_ca.authority.cert)
    ids.set_ca("default", None)  # mTLS off
    assert ids.issued("default.a") is None
    ids.forget("default.a")
    assert ids.scheduled == 0


def test_batches_are_bounded_by_the_budget(authority: CertificateAuthority) -> None:
    ids = Identities(clock=Clock(), budget=0.0)
    ids.set_ca("default", mesh_ca(authority))
    for i in range(10):
        ids.set_need(f"default.p-{i}", WEB)
    # A zero budget still makes progress: one certificate per batch.
    assert len(ids.issue_pending()) == 1
    assert ids.pending == 9


@pytest.mark.anyio
async def test_run_issues_everything_and_yields(authority: CertificateAuthority) -> None:
    ids = Identities(budget=0.005)
    batches: list[int] = []
    ticks_at_batch: list[int] = []
    ticks = 0

    def on_change(nodes: Iterable[str]) -> None:
        batches.append(len(list(nodes)))
        ticks_at_batch.append(ticks)

    ids.on_change = on_change
    ids.set_ca("default", mesh_ca(authority))
    for i in range(60):
        ids.set_need(f"default.p-{i}", WEB)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ids.run)
        tg.start_soon(ticker)
        with anyio.fail_after(30):
            while ids.pending or ids.issued_total < 60:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert sum(batches) >= 60
    assert len(batches) > 1  # several batches
    # The other task ran between every two batches: issuing never held the loop across batches.
    assert all(a < b for a, b in pairwise(ticks_at_batch))


@pytest.mark.anyio
async def test_sds_source_serves_and_marks(authority: CertificateAuthority) -> None:
    ids = Identities(clock=Clock())
    source = MtlsSecretSource(ids)
    async with source.watch_proxy("default.web-1") as watch:
        assert watch.resources(types.SECRET) == {}
        ids.set_ca("default", mesh_ca(authority))
        ids.set_need("default.web-1", WEB)
        ids._notify(ids.issue_pending(budget=10))
        assert watch.take_changes() == {
            types.SECRET: {"identity_cert:secret:default", "mesh_ca:secret:default"}
        }
        secrets = dict(watch.resources(types.SECRET))
        identity = secret_pb2.Secret()
        identity.ParseFromString(secrets["identity_cert:secret:default"].body)
        assert b"PRIVATE KEY" in identity.tls_certificate.private_key.inline_bytes
        ca = secret_pb2.Secret()
        ca.ParseFromString(secrets["mesh_ca:secret:default"].body)
        assert ca.validation_context.trusted_ca.inline_bytes == authority.cert_pem
        # A rotation changes the identity Secret only (the CA resource is the same object).
        ids.rotate_due(now=time.time() + 10_000)
        ids._notify(ids.issue_pending(budget=10))
        after = watch.resources(types.SECRET)
        assert after["mesh_ca:secret:default"] is secrets["mesh_ca:secret:default"]
        assert (
            after["identity_cert:secret:default"].version
            != secrets["identity_cert:secret:default"].version
        )
        # No longer referenced: both Secrets go, and the removal is announced.
        watch.take_changes()
        ids.set_need("default.web-1", None)
        assert watch.take_changes() == {
            types.SECRET: {"identity_cert:secret:default", "mesh_ca:secret:default"}
        }
        assert watch.resources(types.SECRET) == {}


@pytest.mark.anyio
async def test_readiness_waits_for_the_grace(authority: CertificateAuthority) -> None:
    async with open_store("memory", {}) as store:
        service = MtlsService(store, readiness_grace=1.5)
        told: list[tuple[str, frozenset[str]]] = []
        #: Whether b-1 was ready when the engine was told: what the engine would see.
        ready_when_told: list[bool] = []

        def tell(mesh: str, services: set[str]) -> None:
            told.append((mesh, frozenset(services)))
            ready_when_told.append(service.identity_ready("default.b-1"))

        service.on_readiness = tell
        service.keeper.permissive = lambda mesh: True  # type: ignore[method-assign]
        await store.create(
            from_document(
                {
                    "type": "Dataplane",
                    "mesh": "default",
                    "name": "b-1",
                    "networking": {
                        "address": "10.0.0.1",
                        "inbound": [{"port": 1, "tags": {"kuma.io/service": "b"}}],
                    },
                }
            )
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run)
            async with service.source.watch_proxy("default.b-1"):
                with anyio.fail_after(10):
                    while "default.b-1" not in service._needs:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                service.source.refresh("default.b-1")
                service.identities.set_ca("default", mesh_ca(authority))
                with anyio.fail_after(10):
                    while not service.identities.is_current("default.b-1"):  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                # Issued, but not ready before the grace: clients keep plaintext meanwhile.
                assert not service.identity_ready("default.b-1")
                assert set(told) == {("default", frozenset({"b"}))}
                assert not any(ready_when_told)
                # After the grace the engine is told again, and sees the proxy ready then.
                # (The proxy's need and its certificate may each tell, at different times:
                # the telling that matters is the one a grace after the certificate.)
                with anyio.fail_after(10):
                    while not ready_when_told[-1]:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                assert service.identity_ready("default.b-1")
            tg.cancel_scope.cancel()
