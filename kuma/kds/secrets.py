"""Which Secrets and GlobalSecrets global sends its zones, and in which shape (Kuma:
pkg/kds/context/context.go, ``GlobalProvidedFilter``, ``MapZoneTokenSigningKeyGlobalToPublicKey``
and the zone's ``ZoneSyncCallback``).

- **Every mesh Secret** authored on global goes down, under its own name (Kuma hashes other
  mesh-scoped names, never Secrets': a zone looks them up by name). A zone needs them all:
  its builtin CA's certificate *and private key* (the zone issues its proxies' certificates
  from global's CA, so cross-zone mTLS verifies), the dataplane-token signing keys (a token
  issued on global is accepted by every zone) and their revocation list, and the Secrets that
  provided CAs and other resources reference. A zone refuses Secret writes of its own, so
  global's copy is the only one.
- **GlobalSecrets**: the zone-token signing keys travel, and only as their public half,
  renamed ``zone-token-signing-public-key-<serial>`` (a zone checks the zone tokens of its
  ZoneIngresses and ZoneEgresses but must never be able to issue one). Beyond Kuma, the
  revocation list ``zone-token-revocations`` travels as it is: it holds token ids only, and
  without it a zone would keep accepting a zone proxy whose token global revoked (Kuma keeps
  it on global, so there revocation reaches KDS but not the zones' proxies). Everything else
  stays on global: the control plane's TLS key, any user GlobalSecret.

A zone checks what it is sent against the same rules (any other GlobalSecret is refused), so
a global that sent more would not get it stored.
"""

from __future__ import annotations

import base64
import logging

import msgspec
from cryptography.hazmat.primitives import serialization

from kuma.resources import GlobalSecret, Resource, Secret
from kuma.tokens.keys import (
    ZONE_KEY_PREFIX,
    ZONE_PUBLIC_KEY_PREFIX,
    ZONE_REVOCATIONS,
    SigningKeyError,
    load_private_key,
    serial_of,
)

log = logging.getLogger(__name__)

#: The secret kinds global sends down.
SECRET_KINDS = (Secret.TYPE, GlobalSecret.TYPE)


def secret_to_zone(resource: Secret | GlobalSecret) -> Resource | None:
    """``resource`` as a zone stores it (before the origin label), or None if it stays."""
    if isinstance(resource, Secret) or resource.name == ZONE_REVOCATIONS:
        return resource
    serial = serial_of(resource.name, ZONE_KEY_PREFIX)
    if serial is None:
        return None
    try:
        public = (
            load_private_key(resource.value)
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        )
    except SigningKeyError as exc:
        # Kuma's mapper fails the same way; the name and the reason only, never the value.
        log.warning("KDS: not sending GlobalSecret %s: %s", resource.name, exc)
        return None
    return msgspec.structs.replace(
        resource,
        name=f"{ZONE_PUBLIC_KEY_PREFIX}-{serial}",
        data=base64.b64encode(public).decode(),
    )


def zone_refuses(resource: Resource) -> str | None:
    """On a zone: why a received (Global)Secret must not be stored (None: fine)."""
    if (
        isinstance(resource, GlobalSecret)
        and resource.name != ZONE_REVOCATIONS
        and serial_of(resource.name, ZONE_PUBLIC_KEY_PREFIX) is None
    ):
        return (
            f"a zone takes only the GlobalSecrets {ZONE_PUBLIC_KEY_PREFIX}-<serial> "
            f"and {ZONE_REVOCATIONS}"
        )
    return None
