"""Kuma's JWT: RS256 with kid, Kuma's claim names, and every way a token can be bad."""

from __future__ import annotations

import time

import jwt
import pytest

from kuma.tokens.claims import (
    DataplaneIdentity,
    TokenRejected,
    dataplane_claims,
    dataplane_identity,
    header_kid,
    parse_tags,
    sign,
    verify,
)
from kuma.tokens.keys import public_pem

from .helpers import key

IDENTITY = DataplaneIdentity(
    name="web-01", mesh="default", tags={"kuma.io/service": ("web",)}, type="dataplane"
)


def test_kuma_claims_and_header() -> None:
    token = sign(dataplane_claims(IDENTITY), key(1), "1", 3600)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": "1", "typ": "JWT"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert {k: claims[k] for k in ("Name", "Mesh", "Tags", "Type")} == {
        "Name": "web-01",
        "Mesh": "default",
        "Tags": {"kuma.io/service": ["web"]},
        "Type": "dataplane",
    }
    assert claims["nbf"] == claims["iat"] - 300
    assert claims["exp"] == claims["iat"] + 3600
    assert len(claims["jti"]) == 36
    verified = verify(token, key(1), header_kid(token))
    assert verified.kid == "1"
    assert verified.jti == claims["jti"]
    assert dataplane_identity(verified.claims) == IDENTITY
    # The public half verifies as well as the private PEM does.
    assert verify(token, public_pem(key(1)), "1").jti == verified.jti


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: sign({}, key(1), "1", 3600, now=time.time() - 7200), "expired"),
        (lambda: sign({}, key(2), "1", 3600), "bad_signature"),
        (lambda: "not.a.jwt", "malformed"),
        (
            lambda: jwt.encode({"exp": time.time() + 60, "jti": "x"}, "k" * 32, algorithm="HS256"),
            "malformed",
        ),
        (lambda: jwt.encode({"exp": 9e9, "jti": "x"}, "", algorithm="none"), "malformed"),
    ],
    ids=["expired", "forged", "garbage", "hs256", "alg-none"],
)
def test_bad_tokens_are_rejected_with_a_reason(make: object, code: str) -> None:
    token = make()  # type: ignore[operator]
    with pytest.raises(TokenRejected) as rejected:
        verify(token, key(1), header_kid(token)) if code != "malformed" else header_kid(token)
    assert rejected.value.code == code
    assert token not in rejected.value.reason


def test_missing_kid_is_rejected() -> None:
    token = jwt.encode({"exp": 9e9, "jti": "x"}, key(1), algorithm="RS256")
    with pytest.raises(TokenRejected, match="no kid"):
        header_kid(token)


def test_parse_tags() -> None:
    assert parse_tags(["kuma.io/service=web,api", "version=v1", "kuma.io/service=web"]) == {
        "kuma.io/service": ("api", "web"),
        "version": ("v1",),
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_tags(["nope"])


def test_verified_claims_share_their_names_and_common_values_between_tokens() -> None:
    # One verified token stays cached per connected proxy: what tokens have in common is kept
    # once, not decoded anew per token.
    other = DataplaneIdentity(
        name="web-02", mesh="default", tags={"kuma.io/service": ("web",)}, type="dataplane"
    )
    first = verify(sign(dataplane_claims(IDENTITY), key(1), "1", 3600), key(1), "1").claims
    second = verify(sign(dataplane_claims(other), key(1), "1", 3600), key(1), "1").claims
    assert first == {
        **second,
        "Name": "web-01",
        "jti": first["jti"],
        "iat": first["iat"],
        "nbf": first["nbf"],
        "exp": first["exp"],
    }
    pairs = dict(zip(first, second, strict=True))
    assert all(mine is theirs for mine, theirs in pairs.items())
    assert first["Mesh"] is second["Mesh"]
    assert first["Type"] is second["Type"]
    ((tag, values),) = first["Tags"].items()
    ((other_tag, other_values),) = second["Tags"].items()
    assert tag is other_tag
    assert values[0] is other_values[0]
    assert dataplane_identity(second) == other
