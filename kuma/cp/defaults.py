"""Resources kuma-cp creates: Mesh ``default`` on first start and the default policies of
every new mesh (Kuma's ``pkg/defaults``)."""

from __future__ import annotations

import logging

from kuma.policies import default_policies
from kuma.resources import Mesh, ValidationError
from kuma.store import AlreadyExistsError, Operation, Store, StoreError, Synced

from .logs import fields

log = logging.getLogger("kuma.cp.defaults")

DEFAULT_MESH = "default"


async def ensure_default_mesh(store: Store) -> bool:
    """Create Mesh ``default`` unless it exists; True when this call created it.

    ``create`` is atomic in every store (etcd: a transaction on create_revision == 0), so with
    several kuma-cp processes starting at once on one etcd exactly one of them creates it.
    """
    mesh = Mesh(name=DEFAULT_MESH)
    try:
        await store.create(mesh)
    except AlreadyExistsError:
        return False
    log.info("created the default mesh", extra=fields(mesh=DEFAULT_MESH))
    await ensure_mesh_defaults(store, mesh)
    return True


async def ensure_mesh_defaults(store: Store, mesh: Mesh) -> int:
    """Create the default policies of ``mesh`` (Kuma's EnsureDefaultMeshResources) that do
    not exist yet; return how many this call created.

    Each is an atomic ``create``: with several instances racing, each policy is created
    exactly once. A store failure is logged and the rest is still attempted.
    """
    created = 0
    if "*" in mesh.skip_creating_initial_policies:
        log.info("skipping all default policy creation", extra=fields(mesh=mesh.name))
        return 0
    for policy in default_policies(mesh):
        try:
            await store.create(policy)
        except AlreadyExistsError:
            continue
        except (StoreError, ValidationError) as exc:
            log.warning(
                "could not create a default policy",
                extra=fields(mesh=mesh.name, type=policy.TYPE, name=policy.name, error=str(exc)),
            )
            continue
        created += 1
        log.info(
            f"default {policy.TYPE} created",
            extra=fields(mesh=mesh.name, name=policy.name),
        )
    return created


class MeshDefaults:
    """Follows the store: a Mesh created while kuma-cp runs (REST, kumactl, a file, another
    instance) gets its default policies. Meshes that exist at start are left alone, so a
    default policy an operator deleted is not created again by a restart (as in Kuma, which
    creates them with the mesh only)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def run(self) -> None:
        synced = False
        async with self._store.watch() as events:
            async for item in events:
                if isinstance(item, Synced):
                    synced = True
                    continue
                resource = item.resource
                if synced and item.operation is Operation.CREATE and isinstance(resource, Mesh):
                    await ensure_mesh_defaults(self._store, resource)
