"""Secrets over KDS (kuma/kds/secrets.py): which go down and in which shape, a zone stores
global's and checks tokens with them, refuses what a zone must not hold without echoing its
value, and a federated zone's CA keeper and signing-key creator make nothing of their own."""

from __future__ import annotations

import logging
import types

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from kuma.kds import codec, mapping
from kuma.kds.client import global_sink
from kuma.kds.outbox import Outbox
from kuma.mtls.authority import CaKeeper
from kuma.mtls.ca import generate_root
from kuma.resources import GlobalSecret, Mesh, ResourceKey, Secret
from kuma.resources.mtls import BuiltinConf
from kuma.store import Synced
from kuma.store.memory import MemoryStore
from kuma.tls.persisted import SECRET_NAME
from kuma.tokens.claims import (
    DataplaneIdentity,
    TokenRejected,
    ZoneIdentity,
    dataplane_claims,
    sign,
    zone_claims,
)
from kuma.tokens.keyring import ZONE, TokenKeys
from kuma.tokens.keys import ZONE_PUBLIC_KEY_PREFIX
from kuma.tokens.signing import NoSigningKey, TokenSecrets, issue_zone_token
from kuma.tokens.verifier import TokenVerifier
from tests.mtls.test_authority import Reports, mtls_mesh
from tests.multizone.test_kds_resume import connected, until
from tests.tokens.helpers import b64, key, revocations, signing_secret, zone_key

pytestmark = pytest.mark.anyio

CA_CERT = "demo.ca-builtin-cert-ca-1"
CA_KEY = "demo.ca-builtin-key-ca-1"
VALUE = "c2VjcmV0LXZhbHVlLW5ldmVyLWxvZ2dlZA=="  # base64 of "secret-value-never-logged"


def ca_secrets(mesh: str = "demo") -> tuple[Secret, Secret]:
    root = generate_root(mesh, BuiltinConf(key_type="ECDSA"))
    return (
        Secret(mesh=mesh, name=f"{mesh}.ca-builtin-cert-ca-1", data=b64(root.cert_pem)),
        Secret(mesh=mesh, name=f"{mesh}.ca-builtin-key-ca-1", data=b64(root.key_pem)),
    )


class LogEvent(logging.Handler):
    """Set when a log line containing ``text`` is emitted (an event to wait for)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def test_what_goes_down() -> None:
    cert, ca_key = ca_secrets()
    signing = signing_secret("demo", "1", key(1))
    for secret in (cert, ca_key, signing, revocations("demo", "jti-1")):
        down = mapping.to_zone(secret)
        # Kuma keeps mesh Secrets' names (a zone looks them up by name) and their data.
        assert down == Secret(
            mesh="demo", name=secret.name, data=secret.data, labels={"kuma.io/origin": "global"}
        )
    zones_own = Secret(mesh="demo", name="x", data=VALUE, labels={"kuma.io/origin": "zone"})
    assert mapping.to_zone(zones_own) is None

    # Of the GlobalSecrets only the zone-token signing keys, and only their public half.
    public = mapping.to_zone(zone_key("2", key(2)))
    assert isinstance(public, GlobalSecret)
    assert public.name == "zone-token-signing-public-key-2"
    assert public.labels == {"kuma.io/origin": "global"}
    assert b"PRIVATE" not in public.value
    loaded = serialization.load_pem_public_key(public.value)
    assert loaded == serialization.load_pem_private_key(key(2), None).public_key()
    for staying in (
        GlobalSecret(name=SECRET_NAME, data=VALUE),  # the control plane's TLS key
        GlobalSecret(name="my-global-secret", data=VALUE),
    ):
        assert mapping.to_zone(staying) is None
    # Beyond Kuma: the zone-token revocation list (token ids, no secret) goes as it is.
    listed = GlobalSecret(name="zone-token-revocations", data=b64(b"jti-1"))
    assert mapping.to_zone(listed) == GlobalSecret(
        name=listed.name, data=listed.data, labels={"kuma.io/origin": "global"}
    )
    assert mapping.global_kinds()[:3] == ("Mesh", "Secret", "GlobalSecret")


def test_a_broken_zone_key_stays_and_is_named_without_its_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = GlobalSecret(name="zone-token-signing-key-3", data=VALUE)
    with caplog.at_level(logging.WARNING):
        assert mapping.to_zone(broken) is None
    assert "zone-token-signing-key-3" in caplog.text
    assert "secret-value" not in caplog.text
    assert VALUE not in caplog.text


async def test_a_zone_takes_global_secrets_and_verifies_global_tokens() -> None:
    glob, zone = MemoryStore(), MemoryStore()
    await glob.create(Mesh(name="demo"))
    cert, ca_key = ca_secrets()
    ingress = ZoneIdentity(zone="zone-1", scope=("ingress",))
    zone_token = sign(zone_claims(ingress), key(2), "1", 600)
    revoked = sign(zone_claims(ingress), key(2), "1", 600)
    revoked_id = jwt.decode(revoked, options={"verify_signature": False})["jti"]
    for resource in (
        GlobalSecret(name="zone-token-revocations", data=b64(revoked_id.encode())),
        cert,
        ca_key,
        signing_secret("demo", "1", key(1)),
        zone_key("1", key(2)),
        GlobalSecret(name=SECRET_NAME, data=VALUE),
    ):
        await glob.create(resource)
    outbox = Outbox(glob, mapping.to_zone)
    async with anyio.create_task_group() as tg:
        tg.start_soon(outbox.run)
        async with connected(outbox, zone):

            async def arrived() -> bool:
                page = await zone.list(GlobalSecret.TYPE)
                return (
                    len(page.items) == 2 and len((await zone.list(Secret.TYPE, "demo")).items) == 3
                )

            await until(zone, arrived)
        tg.cancel_scope.cancel()

    held = await zone.get(ResourceKey(Secret.TYPE, "demo", CA_CERT))
    assert isinstance(held.resource, Secret)
    assert held.resource.value == cert.value  # byte-equal: the zone's CA is global's
    globals_on_zone = [i.resource.name for i in (await zone.list(GlobalSecret.TYPE)).items]
    assert sorted(globals_on_zone) == ["zone-token-revocations", "zone-token-signing-public-key-1"]

    # The zone's key ring, fed by its own store, accepts tokens global signed. A zone-token
    # key the zone made before it was federated (same kid) is not used (Kuma's validator).
    await zone.create(zone_key("1", key(3)))
    keys = TokenKeys(zone_key_prefix=ZONE_PUBLIC_KEY_PREFIX)
    async with zone.watch() as events:
        async for item in events:
            if isinstance(item, Synced):
                break
            keys.apply(item)
    verifier = TokenVerifier(keys)
    dp = sign(dataplane_claims(DataplaneIdentity(name="web", mesh="demo")), key(1), "1", 600)
    assert verifier.verify(dp, "demo").kid == "1"
    assert verifier.verify(zone_token, ZONE).kid == "1"
    with pytest.raises(TokenRejected):
        verifier.verify(revoked, ZONE)
    own = sign(zone_claims(ingress), key(3), "1", 600)
    with pytest.raises(TokenRejected):
        verifier.verify(own, ZONE)
    # Issuing zone tokens is global's: the zone says so instead of asking for a key.
    await zone.delete(ResourceKey(GlobalSecret.TYPE, "", "zone-token-signing-key-1"))
    with pytest.raises(NoSigningKey, match="generate zone tokens on the global control plane"):
        await issue_zone_token(zone, ingress, 600)


class Item:
    """The shape of a protobuf ``Resource`` as the sink reads it."""

    def __init__(self, resource: GlobalSecret | Secret) -> None:
        sent = codec.encode(resource)
        self.type_url = sent.type_url
        self.name = sent.name
        self.resource = types.SimpleNamespace(value=sent.body)


async def test_a_zone_refuses_what_it_must_not_hold_naming_it_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    zone = MemoryStore()
    private = Item(GlobalSecret(name=SECRET_NAME, data=VALUE, labels=mapping.GLOBAL_LABELS))
    # Not base64: the store's validation refuses it, and its message must not quote it.
    malformed = Item(Secret(mesh="demo", name="bad", data="secret-value-never-logged!"))
    with caplog.at_level(logging.INFO):
        errors = [
            await global_sink(zone).apply(item.type_url, [item], [])
            for item in (private, malformed)
        ]
    assert SECRET_NAME in errors[0]
    assert "zone-token-signing-public-key" in errors[0]
    assert "demo/bad" in errors[1]
    assert "base64" in errors[1]
    assert not (await zone.list(GlobalSecret.TYPE)).items
    assert not (await zone.list(Secret.TYPE, "demo")).items
    for text in (*errors, caplog.text):
        assert VALUE not in text
        assert "secret-value" not in text


async def test_a_federated_zone_makes_no_ca_and_no_signing_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    mesh = mtls_mesh("demo")  # as a zone holds it: from global
    await store.create(Mesh(name=mesh.name, mtls=mesh.mtls, labels=mapping.GLOBAL_LABELS))
    reports = Reports()
    async with anyio.create_task_group() as tg:
        with caplog.at_level(logging.INFO):
            await tg.start(TokenSecrets(store, TokenKeys(), create_keys=False).run)
            waiting = LogEvent("waiting for the mesh CA")
            logging.getLogger("kuma.mtls.ca").addHandler(waiting)
            try:
                tg.start_soon(CaKeeper(store, reports, create=False).run)
                with anyio.fail_after(10):
                    await waiting.event.wait()
            finally:
                logging.getLogger("kuma.mtls.ca").removeHandler(waiting)
        # Nothing made here: no CA, no dataplane-token or zone-token signing key.
        assert not (await store.list(Secret.TYPE, "demo")).items
        assert not (await store.list(GlobalSecret.TYPE)).items
        # Global's CA arrives (as the KDS sink writes it) and is the one used.
        cert, ca_key = ca_secrets()
        await store.create(cert)
        await store.create(ca_key)
        ca = await reports.wait("demo")
        assert ca is not None
        assert ca.authority.cert_pem == cert.value
        tg.cancel_scope.cancel()
    names = {i.resource.name for i in (await store.list(Secret.TYPE, "demo")).items}
    assert names == {CA_CERT, CA_KEY}
    assert "CA created" not in caplog.text
