"""Keys made once per test session (RSA generation costs tens of milliseconds), events, and
a Dataplane to check tokens against."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from functools import cache

from kuma.resources import Dataplane, GlobalSecret, Resource, ResourceMeta, Secret, decode_one
from kuma.store import Operation, ResourceEvent
from kuma.tokens.keys import new_signing_key


@cache
def key(number: int) -> bytes:
    return new_signing_key()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def signing_secret(mesh: str, kid: str, pem: bytes) -> Secret:
    return Secret(mesh=mesh, name=f"dataplane-token-signing-key-{mesh}-{kid}", data=b64(pem))


def revocations(mesh: str, *jtis: str) -> Secret:
    return Secret(
        mesh=mesh, name=f"dataplane-token-revocations-{mesh}", data=b64(",".join(jtis).encode())
    )


def zone_key(kid: str, pem: bytes) -> GlobalSecret:
    return GlobalSecret(name=f"zone-token-signing-key-{kid}", data=b64(pem))


def event(resource: Resource, operation: Operation = Operation.CREATE) -> ResourceEvent:
    now = datetime.now(UTC)
    return ResourceEvent(operation, resource, ResourceMeta("1", now, now), 1)


def dataplane(
    name: str = "web-01", mesh: str = "default", tags: dict[str, str] | None = None
) -> Dataplane:
    extra = "".join(f"\n        {k}: {v}" for k, v in (tags or {}).items())
    resource = decode_one(
        f"""
type: Dataplane
mesh: {mesh}
name: {name}
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
        kuma.io/service: web{extra}
"""
    )
    assert isinstance(resource, Dataplane)
    return resource
