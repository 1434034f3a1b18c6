"""Kuma's token claims, signed and checked with PyJWT (RS256, ``kid`` in the header).

Dataplane tokens carry ``Name``, ``Mesh``, ``Tags`` (tag -> allowed values), ``Type``; zone
tokens ``Zone`` and ``Scope``. Both carry ``jti`` (a UUID, what revocation lists name),
``iat``, ``nbf`` (five minutes back: clock skew, as Kuma) and ``exp``.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
import msgspec

from .keys import load_private_key, load_public_key

ALGORITHM = "RS256"
#: Kuma backdates ``nbf`` by five minutes so a proxy whose clock is a little ahead still works.
NOT_BEFORE_SKEW = 300
#: An empty ``validFor``: ten years (Kuma's backwards-compatible default).
DEFAULT_VALIDITY = 10 * 365 * 24 * 3600
PROXY_TYPES = ("dataplane", "ingress", "egress")
ZONE_SCOPES = ("ingress", "egress")


class TokenRejected(Exception):
    """A token that does not prove what it should. ``reason`` is for people and never holds the
    token (``expired``, ``revoked``, ``unknown kid 3 in mesh default`` ...); ``code`` is one of
    a few words, for metrics (``expired``, ``revoked``, ``unknown_kid``, ``bad_signature``,
    ``malformed``, ``not_yet_valid``, and the authenticator's own: ``no_token``, ``name``,
    ``mesh``, ``tags``, ``type``, ``scope``, ``no_dataplane``)."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(reason)


class DataplaneIdentity(msgspec.Struct, frozen=True):
    name: str = ""
    mesh: str = ""
    tags: Mapping[str, tuple[str, ...]] = msgspec.field(default_factory=dict)
    type: str = ""


class ZoneIdentity(msgspec.Struct, frozen=True):
    zone: str = ""
    scope: tuple[str, ...] = ()


class Verified(msgspec.Struct, frozen=True):
    """What a checked token says, beside who it names."""

    kid: str
    jti: str
    expires: float
    claims: dict[str, Any]


def dataplane_claims(identity: DataplaneIdentity) -> dict[str, Any]:
    return {
        "Name": identity.name,
        "Mesh": identity.mesh,
        "Tags": {k: list(v) for k, v in sorted(identity.tags.items())},
        "Type": identity.type,
    }


def zone_claims(identity: ZoneIdentity) -> dict[str, Any]:
    return {"Zone": identity.zone, "Scope": list(identity.scope)}


def sign(
    claims: Mapping[str, Any],
    private_pem: bytes,
    kid: str,
    valid_for: float,
    *,
    now: float | None = None,
) -> str:
    """A signed token with ``claims`` plus the registered ones."""
    moment = int(time.time() if now is None else now)
    body = {
        **claims,
        "jti": str(uuid.uuid4()),
        "iat": moment,
        "nbf": moment - NOT_BEFORE_SKEW,
        "exp": moment + int(valid_for),
    }
    key = load_private_key(private_pem)
    return jwt.encode(body, key, algorithm=ALGORITHM, headers={"kid": kid})


def header_kid(token: str) -> str:
    """The ``kid`` of a token's header (unverified). Raises TokenRejected."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise TokenRejected("malformed", "malformed token (not a JWT)") from None
    if header.get("alg") != ALGORITHM:
        raise TokenRejected(
            "malformed", f"unsupported algorithm {header.get('alg')!r} (only {ALGORITHM})"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRejected("malformed", "the token has no kid header")
    return kid


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims without any check: only to explain a refusal, never to grant anything."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims


def verify(token: str, public_pem: bytes, kid: str, *, now: float | None = None) -> Verified:
    """Check the signature and the time claims. Raises TokenRejected."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            load_public_key(public_pem),
            algorithms=[ALGORITHM],
            options={"require": ["exp", "jti"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRejected("expired", "expired") from None
    except jwt.ImmatureSignatureError:
        raise TokenRejected("not_yet_valid", "not valid yet (nbf or iat in the future)") from None
    except jwt.InvalidSignatureError:
        raise TokenRejected(
            "bad_signature", f"invalid signature (not signed by the key with kid {kid})"
        ) from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRejected("malformed", f"missing claim {exc.claim}") from None
    except jwt.PyJWTError as exc:
        raise TokenRejected("malformed", f"malformed token ({type(exc).__name__})") from None
    if now is not None and claims["exp"] <= now:
        raise TokenRejected("expired", "expired")
    return Verified(
        kid=kid, jti=str(claims["jti"]), expires=float(claims["exp"]), claims=_shared_names(claims)
    )


#: Claims whose values many tokens share (a mesh, a proxy type, a zone).
_SHARED_VALUES = frozenset(("Mesh", "Type", "Zone"))


def _shared_names(claims: dict[str, Any]) -> dict[str, Any]:
    """The claims with their names, tag names and tag values, and the values many proxies share,
    interned. A verified token stays cached for as long as its proxy is connected (one per
    proxy), and JSON decoding makes every string anew: ~1.9 KB per cached token before."""
    shared: dict[str, Any] = {}
    for name, value in claims.items():
        if name == "Tags" and isinstance(value, dict):
            value = {
                sys.intern(str(tag)): [sys.intern(v) if isinstance(v, str) else v for v in values]
                if isinstance(values, list)
                else values
                for tag, values in value.items()
            }
        elif name in _SHARED_VALUES and isinstance(value, str):
            value = sys.intern(value)
        shared[sys.intern(name)] = value
    return shared


def dataplane_identity(claims: Mapping[str, Any]) -> DataplaneIdentity:
    tags = claims.get("Tags") or {}
    return DataplaneIdentity(
        name=str(claims.get("Name") or ""),
        mesh=str(claims.get("Mesh") or ""),
        tags={
            str(k): tuple(str(v) for v in values)
            for k, values in (tags.items() if isinstance(tags, dict) else ())
            if isinstance(values, list)
        },
        type=str(claims.get("Type") or ""),
    )


def zone_identity(claims: Mapping[str, Any]) -> ZoneIdentity:
    scope = claims.get("Scope") or []
    return ZoneIdentity(
        zone=str(claims.get("Zone") or ""),
        scope=tuple(str(s) for s in scope) if isinstance(scope, list) else (),
    )


def parse_tags(values: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``--tag k=v1,v2`` (repeatable) as tag -> values (Kuma's MultiValueTagSet input)."""
    tags: dict[str, list[str]] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise ValueError(f"invalid tag {value!r}: expected KEY=VALUE[,VALUE...]")
        tags.setdefault(key, []).extend(v for v in rest.split(",") if v)
    return {k: tuple(sorted(set(v))) for k, v in tags.items()}
