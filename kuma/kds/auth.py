"""Zone authentication on KDS (beyond Kuma's OSS, which relies on TLS alone): a zone names
itself with the ``client-id`` metadata and proves it with a zone token (``authorization:
Bearer <token>``), the one ``kumactl generate zone-token --zone=<zone>`` issues on global.

The token must verify against global's zone-token keys, and its ``Zone`` claim must be the
zone the stream names. A refusal says why (never the token). An accepted stream holds a grant
that ends when the token expires or is revoked, or its key is deleted; the stream then ends.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kuma.cp.multizone_config import valid_zone_name
from kuma.tokens.claims import TokenRejected, zone_identity
from kuma.tokens.keyring import ZONE
from kuma.tokens.live import LiveGrants
from kuma.tokens.verifier import TokenVerifier
from kuma.xds.server.authn import FOREVER, StreamGrant, Unauthenticated

from .service import AUTHORIZATION, CLIENT_ID

log = logging.getLogger(__name__)


def _text(metadata: Mapping[str, str | bytes], key: str) -> str:
    value = metadata.get(key)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return (value or "").strip()


def zone_of(metadata: Mapping[str, str | bytes]) -> str:
    """The zone a stream names; Unauthenticated when it names none or an invalid one."""
    zone = _text(metadata, CLIENT_ID)
    if not zone:
        raise Unauthenticated(f"no '{CLIENT_ID}' metadata: a zone names itself with it")
    problem = valid_zone_name(zone)
    if problem is not None:
        raise Unauthenticated(f"'{CLIENT_ID}' {zone[:64]!r}: {problem}")
    return zone


class ZoneAuthenticator:
    """Checks a KDS stream's zone token; ``verifier`` None: no check (``zoneProxy.type:
    none``), the zone's name is then taken on its word."""

    def __init__(self, verifier: TokenVerifier | None, live: LiveGrants) -> None:
        self._verifier = verifier
        self._live = live

    def authenticate(self, metadata: Mapping[str, str | bytes]) -> tuple[str, StreamGrant]:
        zone = zone_of(metadata)
        if self._verifier is None:
            return zone, FOREVER
        try:
            token = _text(metadata, AUTHORIZATION)
            if token[:7].lower() == "bearer ":
                token = token[7:].strip()
            if not token:
                raise TokenRejected("no_token", f"no zone token ('{AUTHORIZATION}' metadata)")
            verified = self._verifier.verify(token, ZONE)
            claimed = zone_identity(verified.claims).zone
            if claimed != zone:
                raise TokenRejected(
                    "zone", f"the zone token is for zone {claimed!r}, the stream is zone {zone!r}"
                )
        except TokenRejected as refused:
            log.warning("refusing the KDS stream of zone %s: %s", zone, refused.reason)
            raise Unauthenticated(f"zone {zone}: {refused.reason}") from None
        return zone, self._live.grant(ZONE, verified, f"zone {zone}")
