"""The keys and revocation lists tokens are checked against, kept in step with the store.

Fed by the control plane's store watch (:meth:`TokenKeys.apply`): no read of the store on a
stream's path, and every instance on one etcd sees the same keys. Keys given in the
configuration (``validator.publicKeys``, for tokens signed offline) sit beside the stored ones
and never change. Listeners hear when a key goes (deleted or replaced) and when a revocation
list names new token ids, which is how live streams are closed at that moment.

A *scope* is the mesh name for dataplane tokens, and ``ZONE`` (empty: no mesh has that name)
for zone tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from kuma.resources import GlobalSecret, Resource, Secret
from kuma.store import Operation, ResourceEvent

from .keys import (
    ZONE_KEY_PREFIX,
    ZONE_REVOCATIONS,
    dataplane_key_of,
    dataplane_revocations_name,
    parse_revocations,
    zone_key_of,
)

ZONE = ""


class KeyListener(Protocol):
    def key_gone(self, scope: str, kid: str) -> None: ...

    def revoked(self, scope: str, jtis: frozenset[str]) -> None: ...


class TokenKeys:
    def __init__(
        self,
        static: Mapping[str, Mapping[str, bytes]] | None = None,
        *,
        use_secrets: bool = True,
        zone_key_prefix: str = ZONE_KEY_PREFIX,
    ) -> None:
        """``static``: scope -> kid -> public key PEM (from the configuration);
        ``zone_key_prefix``: the GlobalSecrets that are zone-token keys (a federated zone:
        ``zone-token-signing-public-key``, the public halves global sends, and only those, as
        Kuma's zone validator; a key the zone made before it was federated is not used)."""
        self._zone_key_prefix = zone_key_prefix
        self._static = {scope: dict(keys) for scope, keys in (static or {}).items()}
        self._use_secrets = use_secrets
        #: scope -> kid -> PEM (private key PEM from a secret, or public PEM from the config).
        self._keys: dict[str, dict[str, bytes]] = {s: dict(k) for s, k in self._static.items()}
        self._revoked: dict[str, frozenset[str]] = {}
        self._listeners: list[KeyListener] = []

    def listen(self, listener: KeyListener) -> None:
        self._listeners.append(listener)

    def public_key(self, scope: str, kid: str) -> bytes | None:
        """The key (PEM) for ``kid`` in ``scope``; the same object until the key changes, so a
        cached verification can tell it still holds with an identity check."""
        return self._keys.get(scope, {}).get(kid)

    def kids(self, scope: str) -> list[str]:
        return sorted(self._keys.get(scope, {}), key=lambda k: (len(k), k))

    def is_revoked(self, scope: str, jti: str) -> bool:
        revoked = self._revoked.get(scope)
        return revoked is not None and jti in revoked

    def apply(self, event: ResourceEvent) -> None:
        """Take one store event (anything that is not a key or a revocation list is ignored)."""
        resource = event.resource
        if not isinstance(resource, Secret | GlobalSecret):
            return
        deleted = event.operation is Operation.DELETE
        located = _key_location(resource, self._zone_key_prefix)
        if located is not None:
            if self._use_secrets:
                self._put_key(*located, None if deleted else resource.value)
            return
        scope = _revocation_scope(resource)
        if scope is not None:
            self._put_revocations(scope, frozenset() if deleted else _revocations(resource))

    def apply_all(self, events: Iterable[ResourceEvent]) -> None:
        for event in events:
            self.apply(event)

    def _put_key(self, scope: str, kid: str, pem: bytes | None) -> None:
        keys = self._keys.setdefault(scope, {})
        current = keys.get(kid)
        static = self._static.get(scope, {}).get(kid)
        if pem is None:
            if static is not None:
                keys[kid] = static
            else:
                keys.pop(kid, None)
        elif current == pem:
            return
        else:
            keys[kid] = pem
        if current is not None and keys.get(kid) is not current:
            for listener in self._listeners:
                listener.key_gone(scope, kid)

    def _put_revocations(self, scope: str, jtis: frozenset[str]) -> None:
        before = self._revoked.get(scope, frozenset())
        self._revoked[scope] = jtis
        added = jtis - before
        if added:
            for listener in self._listeners:
                listener.revoked(scope, added)


def _key_location(resource: Secret | GlobalSecret, zone_prefix: str) -> tuple[str, str] | None:
    dataplane = dataplane_key_of(resource)
    if dataplane is not None:
        return dataplane
    kid = zone_key_of(resource, zone_prefix)
    return None if kid is None else (ZONE, kid)


def _revocation_scope(resource: Resource) -> str | None:
    if isinstance(resource, Secret) and resource.name == dataplane_revocations_name(resource.mesh):
        return resource.mesh
    if isinstance(resource, GlobalSecret) and resource.name == ZONE_REVOCATIONS:
        return ZONE
    return None


def _revocations(resource: Secret | GlobalSecret) -> frozenset[str]:
    return parse_revocations(resource.value)
