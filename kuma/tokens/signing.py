"""Signing keys in the store: created with each mesh (once, across every kuma-cp on one etcd),
removed with it, and read to issue tokens.

Creation is a plain ``store.create`` of the name with serial 1: every store creates atomically
(etcd: a transaction on ``create_revision == 0``), so when several instances see a new Mesh at
once, one key is written and the others get ``AlreadyExistsError`` and drop theirs. A mesh that
already has any key (say, only ``-2`` after a rotation) gets none.
"""

from __future__ import annotations

import base64
import contextlib
import logging

import anyio
from anyio.abc import TaskStatus

from kuma.resources import GlobalSecret, Mesh, ResourceKey, Secret
from kuma.store import AlreadyExistsError, NotFoundError, Operation, Store, StoreError, Synced

from .claims import (
    DataplaneIdentity,
    ZoneIdentity,
    dataplane_claims,
    sign,
    zone_claims,
)
from .keyring import TokenKeys
from .keys import (
    DEFAULT_KID,
    ZONE_KEY_PREFIX,
    ZONE_PUBLIC_KEY_PREFIX,
    dataplane_key_prefix,
    dataplane_revocations_name,
    key_name,
    new_signing_key,
    serial_of,
)

log = logging.getLogger("kuma.tokens")


class NoSigningKey(LookupError):
    """No key to sign with; the message says which secret to create."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def ensure_dataplane_signing_key(store: Store, mesh: str) -> bool:
    """Create the mesh's first signing key unless it has one; True when this call did."""
    prefix = dataplane_key_prefix(mesh)
    existing = await store.list(Secret.TYPE, mesh)
    if any(serial_of(i.resource.name, prefix) is not None for i in existing.items):
        return False
    secret = Secret(mesh=mesh, name=key_name(prefix, DEFAULT_KID), data=_b64(new_signing_key()))
    try:
        await store.create(secret)
    except AlreadyExistsError:
        return False
    log.info("created the dataplane-token signing key %s of mesh %s", secret.name, mesh)
    return True


async def ensure_zone_signing_key(store: Store) -> bool:
    existing = await store.list(GlobalSecret.TYPE)
    if any(serial_of(i.resource.name, ZONE_KEY_PREFIX) is not None for i in existing.items):
        return False
    name = key_name(ZONE_KEY_PREFIX, DEFAULT_KID)
    try:
        await store.create(GlobalSecret(name=name, data=_b64(new_signing_key())))
    except AlreadyExistsError:
        return False
    log.info("created the zone-token signing key %s", name)
    return True


async def _latest(store: Store, type: str, mesh: str | None, prefix: str) -> tuple[bytes, str]:
    page = await store.list(type, mesh)
    serials = [
        (serial, item.resource)
        for item in page.items
        if (serial := serial_of(item.resource.name, prefix)) is not None
    ]
    if not serials:
        where = f"Secret {prefix}-<serial> in mesh {mesh}" if mesh else f"GlobalSecret {prefix}-1"
        raise NoSigningKey(f"there is no signing key: create the {where}")
    serial, resource = max(serials, key=lambda pair: pair[0])
    assert isinstance(resource, Secret | GlobalSecret)
    return resource.value, str(serial)


async def issue_dataplane_token(store: Store, identity: DataplaneIdentity, valid_for: float) -> str:
    """Signed with the newest key of the identity's mesh."""
    pem, kid = await _latest(store, Secret.TYPE, identity.mesh, dataplane_key_prefix(identity.mesh))
    return sign(dataplane_claims(identity), pem, kid, valid_for)


async def issue_zone_token(store: Store, identity: ZoneIdentity, valid_for: float) -> str:
    try:
        pem, kid = await _latest(store, GlobalSecret.TYPE, None, ZONE_KEY_PREFIX)
    except NoSigningKey:
        # A federated zone holds only the public halves global sent (kuma/kds/secrets.py):
        # creating a key here is not the remedy (the zone refuses GlobalSecret writes).
        page = await store.list(GlobalSecret.TYPE)
        if any(serial_of(i.resource.name, ZONE_PUBLIC_KEY_PREFIX) is not None for i in page.items):
            raise NoSigningKey(
                "this zone holds only the public zone-token keys global sent: "
                "generate zone tokens on the global control plane"
            ) from None
        raise
    return sign(zone_claims(identity), pem, kid, valid_for)


async def _remove_mesh_secrets(store: Store, mesh: str) -> None:
    """A deleted Mesh takes its token secrets along (Kuma: owned by the Mesh)."""
    prefix = dataplane_key_prefix(mesh)
    try:
        page = await store.list(Secret.TYPE, mesh)
        for item in page.items:
            name = item.resource.name
            if serial_of(name, prefix) is None and name != dataplane_revocations_name(mesh):
                continue
            with contextlib.suppress(NotFoundError):  # another instance was first
                await store.delete(ResourceKey(Secret.TYPE, mesh, name))
    except StoreError as exc:
        log.warning("cannot remove the token secrets of deleted mesh %s: %s", mesh, exc)


class TokenSecrets:
    """Follows the store for the key ring, and creates/removes signing keys with meshes.
    ``create_keys`` False (a federated zone): the keys are global's, they arrive and go over
    KDS (kuma/kds/secrets.py); this only follows them."""

    def __init__(self, store: Store, keys: TokenKeys, *, create_keys: bool = True) -> None:
        self._store = store
        self._keys = keys
        self._create_keys = create_keys

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Started once the key ring holds the store's keys and every existing mesh (and the
        zone tokens) has a signing key; runs until cancelled."""
        async with self._store.watch() as events, anyio.create_task_group() as tg:
            synced = False
            meshes: list[str] = []
            async for item in events:
                if isinstance(item, Synced):
                    if self._create_keys:
                        await ensure_zone_signing_key(self._store)
                        for mesh in meshes:
                            await self._ensure(mesh)
                    synced = True
                    task_status.started()
                    continue
                self._keys.apply(item)
                if not isinstance(item.resource, Mesh) or not self._create_keys:
                    continue
                mesh = item.resource.name
                if not synced:
                    meshes.append(mesh)
                elif item.operation is Operation.CREATE:
                    tg.start_soon(self._ensure, mesh)
                elif item.operation is Operation.DELETE:
                    tg.start_soon(_remove_mesh_secrets, self._store, mesh)

    async def _ensure(self, mesh: str) -> None:
        try:
            await ensure_dataplane_signing_key(self._store, mesh)
        except StoreError as exc:
            log.warning("cannot create the signing key of mesh %s: %s", mesh, exc)
