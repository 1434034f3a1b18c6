"""``POST /tokens/dataplane`` and ``POST /tokens/zone``: Kuma's token issuing endpoints.

Admins only (loopback or the admin token), as Kuma's default access (``mesh-system:admin``).
Bodies: ``{name, mesh, tags: {tag: [values]}, type, validFor}`` and ``{zone, scope: [ingress,
egress], validFor}``; an empty ``validFor`` means ten years (Kuma's compatibility default). The
answer is the token as ``text/plain``, signed with the newest signing key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import msgspec
from aiohttp import web

from kuma.resources import Mesh, ResourceKey
from kuma.resources.validation import parse_duration_ns
from kuma.store import NotFoundError, Store
from kuma.tokens.claims import (
    DEFAULT_VALIDITY,
    PROXY_TYPES,
    ZONE_SCOPES,
    DataplaneIdentity,
    ZoneIdentity,
)
from kuma.tokens.signing import NoSigningKey, issue_dataplane_token, issue_zone_token

from .access import require_admin
from .body import read_body
from .errors import ApiError, invalid

TITLE = "Could not issue a token"
_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class IssuerSettings:
    #: ``dpServer.authn.dpProxy.dpToken.enableIssuer``.
    dataplane: bool = True
    #: ``dpServer.authn.zoneProxy.zoneToken.enableIssuer``.
    zone: bool = True


class _Request(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    valid_for: str = ""


class DataplaneTokenRequest(_Request):
    name: str = ""
    mesh: str = ""
    tags: dict[str, list[str]] = msgspec.field(default_factory=dict)
    type: str = ""


class ZoneTokenRequest(_Request):
    zone: str = ""
    scope: list[str] | None = None


_R = TypeVar("_R", bound=_Request)


def _decode(body: bytes, kind: type[_R]) -> _R:
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(400, "Bad Request", f"not a token request: {exc}") from None


def _valid_for(text: str, problems: list[tuple[str, str]]) -> float:
    if not text:
        return float(DEFAULT_VALIDITY)
    try:
        seconds = parse_duration_ns(text) / 1e9
    except ValueError as exc:
        problems.append(("validFor", f"is invalid: {exc}"))
        return 0.0
    if seconds <= 0:
        problems.append(("validFor", "must be positive"))
    return seconds


def _disabled(what: str) -> ApiError:
    return ApiError(
        400,
        TITLE,
        f"issuing {what} tokens using the control plane is disabled "
        f"(dpServer.authn...enableIssuer: false): sign them offline with kumactl generate",
    )


def token_routes(store: Store, settings: IssuerSettings) -> list[web.RouteDef]:
    async def dataplane(request: web.Request) -> web.StreamResponse:
        require_admin(request, "issuing a dataplane token")
        if not settings.dataplane:
            raise _disabled("dataplane")
        asked = _decode(await read_body(request, _MAX_BODY), DataplaneTokenRequest)
        problems: list[tuple[str, str]] = []
        if not asked.mesh:
            problems.append(("mesh", "cannot be empty"))
        valid_for = _valid_for(asked.valid_for, problems)
        if asked.type and asked.type not in PROXY_TYPES:
            problems.append(("type", f"must be one of {', '.join(PROXY_TYPES)}"))
        if problems:
            raise invalid("Invalid request", problems)
        try:
            await store.get(ResourceKey(Mesh.TYPE, "", asked.mesh))
        except NotFoundError:
            raise invalid(TITLE, [("mesh", f"mesh of name {asked.mesh} is not found")]) from None
        identity = DataplaneIdentity(
            name=asked.name,
            mesh=asked.mesh,
            tags={k: tuple(sorted(set(v))) for k, v in asked.tags.items()},
            type=asked.type,
        )
        try:
            token = await issue_dataplane_token(store, identity, valid_for)
        except NoSigningKey as exc:
            raise ApiError(400, TITLE, str(exc)) from None
        return web.Response(text=token, content_type="text/plain")

    async def zone(request: web.Request) -> web.StreamResponse:
        require_admin(request, "issuing a zone token")
        if not settings.zone:
            raise _disabled("zone")
        asked = _decode(await read_body(request, _MAX_BODY), ZoneTokenRequest)
        problems: list[tuple[str, str]] = []
        if not asked.scope:
            problems.append(("scope", "cannot be empty"))
        for scope in asked.scope or ():
            if scope not in ZONE_SCOPES:
                problems.append(("scope", f"{scope!r} is not one of {', '.join(ZONE_SCOPES)}"))
        valid_for = _valid_for(asked.valid_for, problems)
        if problems:
            raise invalid("Invalid request", problems)
        identity = ZoneIdentity(zone=asked.zone, scope=tuple(asked.scope or ()))
        try:
            token = await issue_zone_token(store, identity, valid_for)
        except NoSigningKey as exc:
            raise ApiError(400, TITLE, str(exc)) from None
        return web.Response(text=token, content_type="text/plain")

    return [web.post("/tokens/dataplane", dataplane), web.post("/tokens/zone", zone)]
