"""Live streams' grants: each open stream holds the grant of the token it was accepted with,
and the grant ends, closing the stream, the moment that token stops being good.

* Expiry: every grant sits in one heap ordered by expiry; one task sleeps until the earliest
  and ends what is due (a new, earlier expiry wakes it). No polling, no timer per stream.
* Revocation and key removal: :class:`~.keyring.TokenKeys` calls :meth:`LiveGrants.revoked`
  and :meth:`LiveGrants.key_gone` from the store watch; the grants of those token ids or of that
  key end at once (found through two indexes, not by a scan).

Kuma leaves such streams open until the proxy reconnects (kumahq/kuma#3379).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable

import anyio

from .claims import Verified
from .keyring import ZONE

log = logging.getLogger("kuma.tokens")


class Grant:
    """What an accepted stream holds (a :class:`kuma.xds.server.authn.StreamGrant`)."""

    __slots__ = (
        "_ended",
        "_is_ended",
        "_live",
        "_on_end",
        "expires",
        "jti",
        "kid",
        "node_id",
        "reason",
        "released",
        "scope",
    )

    def __init__(self, live: LiveGrants, scope: str, verified: Verified, node_id: str) -> None:
        self._live = live
        self.scope = scope
        self.kid = verified.kid
        self.jti = verified.jti
        self.expires = verified.expires
        self.node_id = node_id
        self.reason = ""
        self.released = False
        self._is_ended = False
        # Made only for a waiter (KDS streams); ADS streams, one per proxy, register a
        # callback instead and so hold no event and no task.
        self._ended: anyio.Event | None = None
        self._on_end: Callable[[str], None] | None = None

    @property
    def ended(self) -> bool:
        return self._is_ended

    async def wait_ended(self) -> str:
        if not self._is_ended:
            if self._ended is None:
                self._ended = anyio.Event()
            await self._ended.wait()
        return self.reason

    def on_end(self, callback: Callable[[str], None]) -> None:
        if self._is_ended:
            callback(self.reason)
        else:
            self._on_end = callback

    def end(self, code: str, reason: str) -> None:
        if self._is_ended or self.released:
            return
        self.reason = reason
        self._is_ended = True
        if self._ended is not None:
            self._ended.set()
        callback, self._on_end = self._on_end, None
        if callback is not None:
            callback(reason)
        self._live.closed(self, code)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._live.forget(self)


class LiveGrants:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        on_closed: Callable[[str], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_closed = on_closed
        self._heap: list[tuple[float, int, Grant]] = []
        self._serial = itertools.count()
        self._by_key: dict[tuple[str, str], set[Grant]] = {}
        self._by_jti: dict[tuple[str, str], set[Grant]] = {}
        self._wake: anyio.Event | None = None
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def grant(self, scope: str, verified: Verified, node_id: str) -> Grant:
        grant = Grant(self, scope, verified, node_id)
        self._live += 1
        self._by_key.setdefault((scope, grant.kid), set()).add(grant)
        self._by_jti.setdefault((scope, grant.jti), set()).add(grant)
        earliest = self._heap[0][0] if self._heap else math.inf
        heapq.heappush(self._heap, (grant.expires, next(self._serial), grant))
        if grant.expires < earliest and self._wake is not None:
            self._wake.set()
        return grant

    def forget(self, grant: Grant) -> None:
        if grant not in self._by_key.get((grant.scope, grant.kid), ()):
            return
        self._live -= 1
        _discard(self._by_key, (grant.scope, grant.kid), grant)
        _discard(self._by_jti, (grant.scope, grant.jti), grant)
        # Its heap entry is dropped when it comes up (see run), or here once dead entries are
        # the majority: tokens may be valid for years, and reconnects must not pile up.
        if len(self._heap) > 2 * self._live + 1024:
            self._heap = [e for e in self._heap if not (e[2].released or e[2].ended)]
            heapq.heapify(self._heap)

    def closed(self, grant: Grant, code: str) -> None:
        log.warning("closing the ADS stream of %s: %s", grant.node_id, grant.reason)
        self.forget(grant)
        if self._on_closed is not None:
            self._on_closed(code)

    # --- what the key ring reports -------------------------------------------------------------

    def key_gone(self, scope: str, kid: str) -> None:
        where = "for zone tokens" if scope == ZONE else f"of mesh {scope}"
        for grant in list(self._by_key.get((scope, kid), ())):
            grant.end("key_gone", f"the signing key {kid} {where} was deleted or replaced")

    def revoked(self, scope: str, jtis: frozenset[str]) -> None:
        for jti in jtis:
            for grant in list(self._by_jti.get((scope, jti), ())):
                grant.end("revoked", f"token revoked (token id {jti})")

    # --- expiry ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """End grants as they expire, until cancelled."""
        while True:
            heap = self._heap
            self._wake = anyio.Event()
            now = self._clock()
            while heap and (heap[0][2].released or heap[0][2].ended or heap[0][0] <= now):
                _, _, grant = heapq.heappop(heap)
                if not grant.released and not grant.ended:
                    grant.end("expired", "token expired")
            delay = heap[0][0] - now if heap else math.inf
            with anyio.move_on_after(delay):
                await self._wake.wait()


def _discard(index: dict[tuple[str, str], set[Grant]], key: tuple[str, str], grant: Grant) -> None:
    found = index.get(key)
    if found is not None:
        found.discard(grant)
        if not found:
            del index[key]
