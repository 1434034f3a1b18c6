"""Resources kuma-cp creates on first start (Kuma's ``pkg/defaults``)."""

from __future__ import annotations

import logging

from kuma.resources import Mesh
from kuma.store import AlreadyExistsError, Store

from .logs import fields

log = logging.getLogger("kuma.cp.defaults")

DEFAULT_MESH = "default"


async def ensure_default_mesh(store: Store) -> bool:
    """Create Mesh ``default`` unless it exists; True when this call created it.

    ``create`` is atomic in every store (etcd: a transaction on create_revision == 0), so with
    several kuma-cp processes starting at once on one etcd exactly one of them creates it.
    """
    try:
        await store.create(Mesh(name=DEFAULT_MESH))
    except AlreadyExistsError:
        return False
    log.info("created the default mesh", extra=fields(mesh=DEFAULT_MESH))
    return True
