"""Who may write: callers on loopback, and anyone presenting the admin token.

Kuma treats callers on localhost as admins and asks everyone else for credentials. Here the
rule is kept to what universal mode needs:

- a request that carries ``Authorization: Bearer <token>`` is judged by the token alone, when
  an admin token is configured (``apiServer.auth.adminToken``): a wrong token is 401, wherever
  it comes from;
- otherwise a caller whose peer address is a loopback address (127.0.0.0/8, ::1, and
  IPv4-mapped loopback) may read and write;
- anyone else may read; a write is 403;
- some reads are admin-only as well (Secrets, token issuing): their handlers call
  :func:`require_admin`, which applies the same rule as a write.

The peer address is the TCP peer, never a forwarding header: a reverse proxy on the same host
makes every caller look local, so put one in front only if it does its own access control.
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .errors import ApiError

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Set on every request by the middleware: whether the caller may do everything.
IS_ADMIN = web.RequestKey("kuma.api.is_admin", bool)


def is_loopback(remote: str | None) -> bool:
    """Whether ``remote`` (``request.remote``: an IP, or None for non-IP transports) is a
    loopback address."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _bearer(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def access_middleware(admin_token: str) -> Middleware:
    token = admin_token.encode()

    @web.middleware
    async def check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        if header is not None and token:
            given = _bearer(header)
            if given is None or not hmac.compare_digest(given.encode(), token):
                raise ApiError(401, "Unauthenticated", "invalid admin token")
            request[IS_ADMIN] = True
            return await handler(request)
        request[IS_ADMIN] = is_loopback(request.remote)
        if request.method in READ_METHODS or request[IS_ADMIN]:
            return await handler(request)
        raise ApiError(
            403,
            "Access Denied",
            f"{request.method} is allowed only from loopback or with the admin token "
            "(Authorization: Bearer <apiServer.auth.adminToken>); this caller may only read",
        )

    return check_access


def require_admin(request: web.Request, what: str) -> None:
    """403 unless the caller is an admin (loopback, or the admin token)."""
    if not request.get(IS_ADMIN, False):
        raise ApiError(
            403,
            "Access Denied",
            f"{what} is allowed only from loopback or with the admin token "
            "(Authorization: Bearer <apiServer.auth.adminToken>)",
        )
