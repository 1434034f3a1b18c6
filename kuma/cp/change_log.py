"""The operator's audit trail of store changes: one line per change, one line per bulk load.

Every change after the store's initial snapshot is logged at debug. At info, the first
:data:`LINES_PER_BURST` changes of a burst get a line each, at once (``resource changed
operation=CREATE type=Dataplane mesh=default name=web-01``); the rest of a burst (a
10,000-document file, a folder copied in) is summed up in one ``resources changed`` line with
counts by operation and type when it ends, instead of 10,000 lines. A burst is changes that
each followed the previous within :data:`BURST_GAP` seconds.
Mesh-less types (Mesh, ZoneIngress, ...) carry no ``mesh`` field.

The watch loop hands changes over without waiting (:meth:`ChangeLog.add`); the lines are
written by :meth:`ChangeLog.run`.
"""

from __future__ import annotations

import logging
from collections import Counter, deque

import anyio

from kuma.store import ResourceEvent

from .logs import fields

log = logging.getLogger("kuma.cp")

#: Changes closer together than this are one burst.
BURST_GAP = 0.2
#: Changes of a burst logged one by one (at once); the rest are counted in one line at its end.
LINES_PER_BURST = 5


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
        self._pending: deque[ResourceEvent] = deque()
        self._arrived: anyio.Event | None = None

    def add(self, event: ResourceEvent) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("resource changed", extra=fields(**_event_fields(event)))
        self._pending.append(event)
        if self._arrived is not None:
            self._arrived.set()

    async def _next(self) -> ResourceEvent:
        while not self._pending:
            self._arrived = anyio.Event()
            await self._arrived.wait()
        return self._pending.popleft()

    async def run(self) -> None:
        while True:
            burst = [await self._next()]
            _log_one(burst[0])
            while True:
                with anyio.move_on_after(BURST_GAP):
                    event = await self._next()
                    burst.append(event)
                    if len(burst) <= LINES_PER_BURST:
                        _log_one(event)
                    continue
                break
            if len(burst) > LINES_PER_BURST:
                _log_rest(burst[LINES_PER_BURST:])


def _log_one(event: ResourceEvent) -> None:
    log.info("resource changed", extra=fields(**_event_fields(event)))


def _log_rest(rest: list[ResourceEvent]) -> None:
    operations = Counter(event.operation.value for event in rest)
    types = Counter(event.key.type for event in rest)
    log.info(
        "resources changed",
        extra=fields(
            more=len(rest),
            **{operation.lower(): n for operation, n in sorted(operations.items())},
            types=",".join(f"{kind}:{n}" for kind, n in sorted(types.items())),
        ),
    )
