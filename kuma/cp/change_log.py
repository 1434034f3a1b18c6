"""The operator's audit trail of store changes: one line per change, one line per bulk load.

Every change after the store's initial snapshot is logged at debug. At info, a change that
comes alone gets its own line (``resource changed operation=CREATE type=Dataplane mesh=default
name=web-01``); changes that arrive together (a 10,000-document file, a folder copied in) are
summed up in one ``resources changed`` line with counts by operation and type, instead of
10,000 lines. "Together" means each followed the previous within :data:`BURST_GAP` seconds.
Mesh-less types (Mesh, ZoneIngress, ...) carry no ``mesh`` field.

The watch loop hands changes over without waiting (:meth:`ChangeLog.add`); the lines are
written by :meth:`ChangeLog.run`, which waits on a memory stream (safe to time out on).
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import anyio

from kuma.store import ResourceEvent

from .logs import fields

log = logging.getLogger("kuma.cp")

#: Changes closer together than this are one burst.
BURST_GAP = 0.2


def _event_fields(event: ResourceEvent) -> dict[str, object]:
    key = event.key
    values: dict[str, object] = {"operation": event.operation.value, "type": key.type}
    if key.mesh:
        values["mesh"] = key.mesh
    values["name"] = key.name
    values["version"] = event.meta.version
    return values


class ChangeLog:
    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[ResourceEvent](math.inf)

    def add(self, event: ResourceEvent) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("resource changed", extra=fields(**_event_fields(event)))
        self._send.send_nowait(event)

    async def run(self) -> None:
        async with self._receive:
            while True:
                burst = [await self._receive.receive()]
                while True:
                    with anyio.move_on_after(BURST_GAP):
                        burst.append(await self._receive.receive())
                        continue
                    break
                _log_burst(burst)


def _log_burst(burst: list[ResourceEvent]) -> None:
    if len(burst) == 1:
        log.info("resource changed", extra=fields(**_event_fields(burst[0])))
        return
    operations = Counter(event.operation.value for event in burst)
    types = Counter(event.key.type for event in burst)
    log.info(
        "resources changed",
        extra=fields(
            count=len(burst),
            **{operation.lower(): n for operation, n in sorted(operations.items())},
            types=",".join(f"{kind}:{n}" for kind, n in sorted(types.items())),
        ),
    )
