"""The ADS authenticator against the key ring fed by store events: every refusal reason, the
verified-token cache, and live grants ended by revocation, key removal and expiry."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from envoy.config.core.v3.base_pb2 import Node
from google.protobuf.struct_pb2 import Struct

from kuma.cp.authn import build_authentication
from kuma.cp.config_authn import (
    DpProxyAuthn,
    DpServerAuthn,
    DpTokenSettings,
    PublicKey,
    TokenValidator,
)
from kuma.resources import Mesh, ResourceKey, Secret, encode_json
from kuma.store import Operation
from kuma.store.memory import MemoryStore
from kuma.tokens import claims as claims_module
from kuma.tokens.authenticator import TokenAuthenticator
from kuma.tokens.claims import (
    DataplaneIdentity,
    ZoneIdentity,
    dataplane_claims,
    header_kid,
    sign,
    zone_claims,
)
from kuma.tokens.keyring import TokenKeys
from kuma.tokens.keys import public_pem
from kuma.tokens.live import LiveGrants
from kuma.tokens.signing import issue_dataplane_token
from kuma.tokens.verifier import TokenVerifier
from kuma.xds.server.authn import Unauthenticated

from .helpers import dataplane, event, key, revocations, signing_secret, zone_key

pytestmark = pytest.mark.anyio


class Rig:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.keys = TokenKeys()
        self.refused: list[str] = []
        self.closed: list[str] = []
        self.live = LiveGrants(on_closed=self.closed.append)
        self.keys.listen(self.live)
        self.verifier = TokenVerifier(self.keys)
        self.auth = TokenAuthenticator(
            self.store, self.verifier, self.live, on_refused=self.refused.append, zone="east"
        )
        self.keys.apply(event(signing_secret("default", "1", key(1))))

    def node(self, resource: Any = None, proxy_type: str = "") -> Node:
        resource = resource or dataplane()
        metadata = Struct()
        metadata.update({"dataplane.resource": encode_json(resource).decode()})
        if proxy_type:
            metadata.update({"dataplane.proxyType": proxy_type})
        return Node(id=f"{resource.mesh}.{resource.name}", metadata=metadata)

    async def refuse(self, token: str | None, node: Node | None = None) -> str:
        node = node or self.node()
        metadata = {} if token is None else {"authorization": token}
        with pytest.raises(Unauthenticated) as refused:
            await self.auth.authenticate(node.id, node, metadata)
        return refused.value.reason


def token(
    identity: DataplaneIdentity | None = None, pem: int = 1, kid: str = "1", **kw: Any
) -> str:
    identity = identity or DataplaneIdentity(name="web-01", mesh="default")
    return sign(
        dataplane_claims(identity), key(pem), kid, kw.get("valid_for", 3600), now=kw.get("now")
    )


async def test_a_good_token_is_granted_and_every_bad_one_refused_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig()
    node = rig.node()
    good = token()
    grant = await rig.auth.authenticate(node.id, node, {"authorization": f"Bearer {good}"})
    assert len(rig.live) == 1
    grant.release()
    assert len(rig.live) == 0

    cases = {
        "no token": (None, "no token"),
        "forged": (token(pem=2), "invalid signature"),
        "expired": (token(now=time.time() - 7200), "expired"),
        "unknown kid": (token(kid="7"), "unknown kid 7 in mesh default (known: 1)"),
        "name": (
            token(DataplaneIdentity(name="api-01")),
            "the token is for proxy api-01, not web-01",
        ),
        "mesh": (
            token(DataplaneIdentity(mesh="other")),
            "the token is for mesh other, the Dataplane is in mesh default",
        ),
        "missing tag": (
            token(DataplaneIdentity(tags={"version": ("v1",)})),
            "the Dataplane has no tag 'version', which the token requires",
        ),
        "tag value": (
            token(DataplaneIdentity(tags={"kuma.io/service": ("api",)})),
            "the Dataplane's tag kuma.io/service=web is not allowed by the token (allowed: api)",
        ),
        "type": (
            token(DataplaneIdentity(type="ingress")),
            "the token is for proxy type ingress, this proxy is a dataplane",
        ),
    }
    for what, (bad, reason) in cases.items():
        assert (await rig.refuse(bad)).startswith(reason), what
        if bad is not None:
            assert bad not in caplog.text, what
    assert rig.refused == [
        "no_token",
        "bad_signature",
        "expired",
        "unknown_kid",
        "name",
        "mesh",
        "tags",
        "tags",
        "type",
    ]
    assert "refusing the ADS stream of default.web-01: expired" in caplog.text
    assert len(rig.live) == 0


async def test_a_token_for_another_mesh_is_named_as_such() -> None:
    rig = Rig()
    rig.keys.apply(event(signing_secret("other", "1", key(2))))
    other = token(DataplaneIdentity(mesh="other"), pem=2)
    reason = await rig.refuse(other)
    assert reason == "the token is for mesh other, the Dataplane is in mesh default"


async def test_tag_tokens_admit_any_proxy_with_allowed_values() -> None:
    rig = Rig()
    shared = token(DataplaneIdentity(mesh="default", tags={"kuma.io/service": ("web", "api")}))
    for name in ("web-01", "web-02"):
        node = rig.node(dataplane(name))
        (await rig.auth.authenticate(node.id, node, {"authorization": shared})).release()


async def test_the_stored_dataplane_is_used_without_metadata() -> None:
    rig = Rig()
    node = Node(id="default.web-01")
    assert (await rig.refuse(token(), node)).startswith("no Dataplane default/web-01")
    await rig.store.create(dataplane())
    (await rig.auth.authenticate(node.id, node, {"authorization": token()})).release()


async def test_cached_verifications_skip_rsa_but_not_revocation_or_key_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig()
    calls: list[str] = []
    real = claims_module.verify

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append("verify")
        return real(*args, **kwargs)

    monkeypatch.setattr("kuma.tokens.verifier.verify", counting)
    good = token()
    for _ in range(3):
        rig.verifier.verify(good, "default")
    assert calls == ["verify"]
    jti = rig.verifier.verify(good, "default").jti
    rig.keys.apply(event(revocations("default", "someone-else", jti)))
    assert (await rig.refuse(good)) == f"revoked (token id {jti})"
    rig.keys.apply(event(revocations("default"), Operation.DELETE))
    rig.verifier.verify(good, "default")
    # The key replaced by another: the cached result is dropped and the token checked again.
    rig.keys.apply(event(signing_secret("default", "1", key(2)), Operation.UPDATE))
    assert (await rig.refuse(good)).startswith("invalid signature")
    assert calls == ["verify", "verify"]


async def test_live_streams_end_on_revocation_key_removal_and_expiry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    rig = Rig()
    node = rig.node()
    async with anyio.create_task_group() as tg:
        tg.start_soon(rig.live.run)
        revoked = await rig.auth.authenticate(node.id, node, {"authorization": token()})
        by_key = await rig.auth.authenticate(node.id, node, {"authorization": token()})
        short = await rig.auth.authenticate(node.id, node, {"authorization": token(valid_for=1)})
        rig.keys.apply(event(revocations("default", revoked.jti)))  # type: ignore[attr-defined]
        with anyio.fail_after(5):
            assert (await revoked.wait_ended()).startswith("token revoked")
        # Expiry: the heap's timer ends it at its time (about a second from its issue).
        with anyio.fail_after(10):
            assert await short.wait_ended() == "token expired"
        rig.keys.apply(event(signing_secret("default", "1", key(1)), Operation.DELETE))
        with anyio.fail_after(5):
            assert (await by_key.wait_ended()).startswith(
                "the signing key 1 of mesh default was deleted"
            )
        tg.cancel_scope.cancel()
    assert sorted(rig.closed) == ["expired", "key_gone", "revoked"]
    assert "closing the ADS stream of default.web-01: token expired" in caplog.text
    assert len(rig.live) == 0


async def test_zone_proxies_need_a_zone_token_in_scope() -> None:
    rig = Rig()
    rig.keys.apply(event(zone_key("1", key(3))))
    ingress = rig.node(proxy_type="ingress")

    def zone_token(zone: str, *scope: str) -> str:
        return sign(zone_claims(ZoneIdentity(zone=zone, scope=scope)), key(3), "1", 60)

    (
        await rig.auth.authenticate(
            ingress.id, ingress, {"authorization": zone_token("east", "ingress")}
        )
    ).release()
    assert (await rig.refuse(zone_token("east", "egress"), ingress)).startswith(
        "a ingress is out of the token's scope"
    )
    assert (await rig.refuse(zone_token("west", "ingress"), ingress)).startswith(
        "the token is for zone west"
    )
    # A dataplane token is not a zone token (another key ring scope: unknown kid or signature).
    assert "kid" in await rig.refuse(token(kid="9"), ingress)


async def test_key_rotation_through_the_store() -> None:
    """A token signed by key 1 works after key 2 is added (which then signs new tokens) and
    stops working once key 1 is deleted; a stream holding it is closed."""
    rig = Rig()
    await rig.store.create(Mesh(name="default"))
    await rig.store.create(signing_secret("default", "1", key(1)))
    identity = DataplaneIdentity(name="web-01", mesh="default")
    old = await issue_dataplane_token(rig.store, identity, 3600)
    node = rig.node()
    async with anyio.create_task_group() as tg:
        tg.start_soon(rig.live.run)
        held = await rig.auth.authenticate(node.id, node, {"authorization": old})
        second = signing_secret("default", "2", key(2))
        await rig.store.create(second)
        rig.keys.apply(event(second))
        new = await issue_dataplane_token(rig.store, identity, 3600)
        assert (header_kid(old), header_kid(new)) == ("1", "2")
        for token in (old, new):
            (await rig.auth.authenticate(node.id, node, {"authorization": token})).release()
        first = signing_secret("default", "1", key(1))
        await rig.store.delete(ResourceKey(Secret.TYPE, "default", first.name))
        rig.keys.apply(event(first, Operation.DELETE))
        with anyio.fail_after(5):
            assert (await held.wait_ended()).startswith("the signing key 1 of mesh default")
        assert (await rig.refuse(old)).startswith("unknown kid 1 in mesh default (known: 2)")
        (await rig.auth.authenticate(node.id, node, {"authorization": new})).release()
        tg.cancel_scope.cancel()


async def test_offline_tokens_verify_with_configured_public_keys(tmp_path: Path) -> None:
    """``validator.publicKeys``: tokens signed offline verify with the public key from the
    configuration, with or without stored keys; ``useSecrets: false`` ignores stored keys."""
    public = tmp_path / "key.pub"
    public.write_bytes(public_pem(key(3)))
    authn = DpServerAuthn(
        dp_proxy=DpProxyAuthn(
            dp_token=DpTokenSettings(
                validator=TokenValidator(
                    use_secrets=False,
                    public_keys=[PublicKey(kid="5", mesh="default", key_file=str(public))],
                )
            )
        )
    )
    built = build_authentication(MemoryStore(), authn)
    built.keys.apply(event(signing_secret("default", "1", key(1))))  # ignored: useSecrets off
    node = Rig().node()
    offline = token(pem=3, kid="5")
    grant = await built.authenticator.authenticate(node.id, node, {"authorization": offline})
    grant.release()
    with pytest.raises(Unauthenticated, match="unknown kid 1 in mesh default"):
        await built.authenticator.authenticate(node.id, node, {"authorization": token()})


async def test_a_grant_calls_back_once_when_it_ends_or_at_once_if_it_has() -> None:
    rig = Rig()
    node = rig.node()
    grant = await rig.auth.authenticate(node.id, node, {"authorization": token()})
    heard: list[str] = []
    grant.on_end(heard.append)
    assert heard == []
    rig.keys.apply(event(revocations("default", grant.jti)))  # type: ignore[attr-defined]
    assert len(heard) == 1
    assert heard[0].startswith("token revoked")
    rig.keys.apply(event(revocations("default", grant.jti)))  # type: ignore[attr-defined]
    assert len(heard) == 1
    # Registered after the end: called at once, with the same reason.
    late: list[str] = []
    grant.on_end(late.append)
    assert late == heard
