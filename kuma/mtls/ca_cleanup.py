"""Removing builtin CA Secrets nobody can use: those of a deleted Mesh, and a certificate whose
key was never written.

* **Mesh deleted.** Kuma stores a builtin CA's Secrets with the Mesh as their owner, so they go
  with it (managers/apis/mesh: "secrets are deleted via owner reference"). kuma-py's stores have
  no owners: every kuma-cp's CA keeper removes the Secrets ``<mesh>.ca-builtin-{cert,key}-*`` of
  a mesh that is gone, once its watch is synced (so a mesh deleted while no kuma-cp ran is
  cleaned at the next start too).
* **Certificate without key.** The keeper writes the certificate Secret first (the atomic
  create that elects the one creator) and the key right after; a creator that dies in between
  leaves a certificate whose key is lost, and the mesh without a CA. Such a certificate is
  removed, and the keepers' next pass creates a fresh pair (one instance wins, as always).

Exactly once across instances: every instance may try, but each delete is conditional on the
version this instance saw (``delete(version=...)``). The first one wins; the others get
NotFound or Conflict and do nothing, and a Secret written since (a Mesh created again with a
new CA) has another version, so a late instance can never remove it. A Secret younger than
:data:`GRACE` is left alone until it is older: its creator may be about to write the key, or
this instance may not yet have seen the Mesh that another instance just created.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime

from kuma.resources import Mesh, Secret
from kuma.resources.model import ResourceKey
from kuma.resources.mtls import BUILTIN, builtin_secret_names, mesh_mtls
from kuma.store import ConflictError, NotFoundError, Operation, ResourceEvent, Store, StoreError

log = logging.getLogger("kuma.mtls.ca")

#: Seconds a builtin CA Secret must have existed before it may be removed.
GRACE = 10.0
_CERT = ".ca-builtin-cert-"
_KEY = ".ca-builtin-key-"


def builtin_ca_backend(mesh: str, name: str) -> str | None:
    """The backend a builtin CA Secret name of ``mesh`` belongs to, else None."""
    for infix in (_CERT, _KEY):
        prefix = mesh + infix
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix) :]
    return None


class CaSecretCleaner:
    def __init__(self, store: Store, *, grace: float = GRACE) -> None:
        self._store = store
        self._grace = grace
        #: (mesh, Secret name) → (version, creation time) of every builtin CA Secret seen.
        self._seen: dict[tuple[str, str], tuple[str, datetime]] = {}

    def observe(self, event: ResourceEvent) -> None:
        secret = event.resource
        assert isinstance(secret, Secret)
        key = (secret.mesh, secret.name)
        if builtin_ca_backend(*key) is None:
            return
        if event.operation is Operation.DELETE:
            self._seen.pop(key, None)
        else:
            self._seen[key] = (event.meta.version, event.meta.creation_time)

    def meshes(self) -> set[str]:
        return {mesh for mesh, _ in self._seen}

    async def clean(self, name: str, mesh: Mesh | None, creating: Collection[str]) -> float | None:
        """Remove ``name``'s unusable builtin CA Secrets (``creating``: backends this instance
        is creating now). Returns in how many seconds to look again (None: no need)."""
        retry: float | None = None
        now = datetime.now(UTC)
        for reason, key in self._unusable(name, mesh, creating):
            # Looked up again at each step: while this pass awaited a delete, the watch may
            # have seen another instance remove this Secret (it is then gone from ``_seen``).
            seen = self._seen.get(key)
            if seen is None:
                continue
            version, created = seen
            wait = self._grace - (now - created).total_seconds()
            if wait > 0:
                retry = wait if retry is None else min(retry, wait)
                continue
            await self._remove(key, version, reason)
        return retry

    def _unusable(
        self, name: str, mesh: Mesh | None, creating: Collection[str]
    ) -> list[tuple[str, tuple[str, str]]]:
        ours = [key for key in self._seen if key[0] == name]
        if mesh is None:
            return [("its mesh was deleted", key) for key in ours]
        mtls = mesh_mtls(mesh)
        found: list[tuple[str, tuple[str, str]]] = []
        for backend in mtls.backends if mtls is not None else ():
            if backend.type != BUILTIN or backend.name in creating:
                continue
            cert, key = builtin_secret_names(name, backend.name)
            if (name, cert) in self._seen and (name, key) not in self._seen:
                found.append(("its private key was never stored", (name, cert)))
        return found

    async def _remove(self, key: tuple[str, str], version: str, reason: str) -> None:
        mesh, name = key
        fields = {"mesh": mesh, "secret": name, "reason": reason}
        try:
            await self._store.delete(ResourceKey(Secret.TYPE, mesh, name), version=version)
        except (NotFoundError, ConflictError):
            # Another instance removed it first, or it was written again since: not ours.
            log.debug("CA Secret already removed or replaced", extra={"fields": fields})
            return
        except StoreError as error:
            fields["error"] = str(error)
            log.error(
                "cannot remove a CA Secret; retrying on the next change", extra={"fields": fields}
            )
            return
        log.info("CA Secret removed", extra={"fields": fields})
