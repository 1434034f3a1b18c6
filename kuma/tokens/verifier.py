"""Checking a token: signature by its ``kid``'s key, time claims, revocation, with a cache.

Verifying an RS256 signature costs tens of microseconds to a few hundred; a reconnect storm of
10,000 proxies would pay it 10,000 times. A verified token is cached by the SHA-256 of its text
(never the text itself) with the key object that verified it: a hit is valid while the same key
is in place and the token has not expired, and the revocation list is consulted on every call
(a set lookup), so the cache never outlives a key, an expiry or a revocation.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from .claims import TokenRejected, Verified, header_kid, verify
from .keyring import ZONE, TokenKeys

#: Verified tokens kept (a few hundred bytes each): room for every proxy of a big zone.
CACHE_SIZE = 100_000


def _where(scope: str) -> str:
    return "for zone tokens" if scope == ZONE else f"in mesh {scope}"


class TokenVerifier:
    def __init__(
        self,
        keys: TokenKeys,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[str, bytes], tuple[Verified, bytes]] = OrderedDict()

    def verify(self, token: str, scope: str) -> Verified:
        """The checked token, or TokenRejected with the reason."""
        now = self._clock()
        digest = hashlib.sha256(token.encode()).digest()
        entry = (scope, digest)
        hit = self._cache.get(entry)
        if hit is not None:
            cached, verified_by = hit
            if cached.expires <= now:
                del self._cache[entry]
                raise TokenRejected("expired", "expired")
            if self._keys.public_key(scope, cached.kid) is verified_by:
                self._check_revocation(scope, cached)
                return cached
            del self._cache[entry]
        kid = header_kid(token)
        key = self._keys.public_key(scope, kid)
        if key is None:
            known = ", ".join(self._keys.kids(scope)) or "none"
            raise TokenRejected(
                "unknown_kid",
                f"unknown kid {kid} {_where(scope)} (known: {known}); "
                "if the signing key was rotated, generate a new token",
            )
        verified = verify(token, key, kid, now=now)
        self._check_revocation(scope, verified)
        self._cache[entry] = (verified, key)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return verified

    def _check_revocation(self, scope: str, verified: Verified) -> None:
        if self._keys.is_revoked(scope, verified.jti):
            raise TokenRejected("revoked", f"revoked (token id {verified.jti})")

    def forget(self) -> None:
        self._cache.clear()
