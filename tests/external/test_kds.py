"""An ExternalService authored on global reaches a zone over KDS (in-memory streams) with the
Secret its DataSource names, and the zone's engine resolves it from there; a deletion follows."""

from __future__ import annotations

import base64

import anyio
import pytest

from kuma.kds import mapping
from kuma.kds.outbox import Outbox
from kuma.resources import ExternalService, Mesh, ResourceKey, Secret, decode_one
from kuma.store import NotFoundError, Operation, ResourceEvent
from kuma.store.memory import MemoryStore
from kuma.xds.engine.inputs import EngineInputs
from tests.external.documents import HTTPBIN
from tests.multizone.test_kds_resume import connected, until

pytestmark = pytest.mark.anyio

CA = b"-----BEGIN CERTIFICATE-----\nZONECA\n-----END CERTIFICATE-----\n"
ZONE_KEY = ResourceKey("ExternalService", "default", mapping.hashed_name("default", "httpbin"))


async def test_a_zone_gets_the_external_service_and_its_secret() -> None:
    glob, zone = MemoryStore(), MemoryStore()
    await glob.create(Mesh(name="default"))
    await glob.create(Secret(mesh="default", name="httpbin-ca", data=base64.b64encode(CA).decode()))
    created = await glob.create(decode_one(HTTPBIN))
    outbox = Outbox(glob, mapping.to_zone)

    async def arrived() -> bool:
        try:
            await zone.get(ZONE_KEY)
        except NotFoundError:
            return False
        return True

    async def gone() -> bool:
        return not await arrived()

    async with anyio.create_task_group() as tg:
        tg.start_soon(outbox.run)
        async with connected(outbox, zone):
            await until(zone, arrived)
            stored = (await zone.get(ZONE_KEY)).resource
            assert isinstance(stored, ExternalService)
            assert stored.labels == {"kuma.io/origin": "global"}
            assert stored.networking == decode_one(HTTPBIN).networking  # type: ignore[union-attr]

            # The zone's engine resolves it with the Secret global sent (under its own name).
            inputs = EngineInputs()
            snapshot = (await zone.list("Secret")).items + (
                await zone.list("ExternalService")
            ).items
            inputs.apply([ResourceEvent(Operation.CREATE, s.resource, s.meta, 0) for s in snapshot])
            (endpoint,) = inputs.mesh("default").external("httpbin")
            assert endpoint.tls is not None
            assert endpoint.tls.ca == CA

            await glob.delete(created.key)
            await until(zone, gone)
        tg.cancel_scope.cancel()
