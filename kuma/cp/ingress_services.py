"""Writes the zone's ``availableServices`` into its ZoneIngresses (zone and standalone modes).

The list is kept by the engine's observer (kuma/xds/engine/available_services.py); this writer
puts it into each of the zone's own ZoneIngresses whose stored list differs. Unlike Kuma (a
leader rewrites every ingress each ``ingressUpdateInterval``) it writes only after a change,
and only what changed:

- **At once when idle, coalesced in a burst**: a change that finds the writer idle (nothing
  written for ``quiet`` seconds) is written at once: a lone change, the usual case, never waits
  for a quiet period it would only spend idle (it is the first hop of every cross-zone change).
  A change that arrives while a write is in flight, or within ``quiet`` seconds after one, is
  part of a burst: the writer then waits until the inputs have been quiet for ``quiet``
  seconds, but no longer than ``max_delay`` (Kuma's ``multizone.zone.ingressUpdateInterval``)
  after the first unwritten change, so a burst of Dataplane changes costs at most one write
  more than before (its first change); nothing runs while nothing changes (no timer).
- **Only when the list changed**: an ingress whose stored list equals the current one is not
  written.
- **Exactly once across instances** on one store, without a leader: every instance computes
  the same list from the same events (Kuma's order is total), and writes with compare-and-swap
  on the ingress version it saw *in the engine's order*: that version comes after every event
  it was computed from, so a write never replaces a list with an older one. Of the instances
  that saw the same change, the first write wins; the others get a conflict, then see the
  winner's write in their watch, find it equal to their own list, and write nothing.
"""

from __future__ import annotations

import logging
import time

import anyio
import msgspec

from kuma.resources import ValidationError
from kuma.store import ConflictError, NotFoundError, Store, StoreError
from kuma.xds.engine.available_services import AvailableServicesIndex, LocalIngress

from .logs import fields

log = logging.getLogger("kuma.cp.ingress_services")


class IngressServicesWriter:
    def __init__(
        self,
        store: Store,
        index: AvailableServicesIndex,
        *,
        quiet: float = 0.05,
        max_delay: float = 1.0,
        retry_interval: float = 1.0,
    ) -> None:
        self._store = store
        self.index = index
        self.quiet = quiet
        self.max_delay = max_delay
        self.retry_interval = retry_interval
        self._wake = anyio.Event()
        #: When the oldest change not yet written arrived (None: everything is written).
        self._since: float | None = None
        #: When the last write ended (None: none yet): a change within ``quiet`` of it is part
        #: of a burst and is coalesced.
        self._last_write: float | None = None
        #: Ingress updates written, lost to another instance, and passes made (each pass
        #: looks at every local ingress once): for tests, benchmarks and logs.
        self.writes = 0
        self.conflicts = 0
        self.passes = 0
        index.on_change = self.notify

    def notify(self) -> None:
        """The list or a local ingress changed (called by the index, once per engine batch)."""
        if self._since is None:
            self._since = time.monotonic()
        self._wake.set()

    async def run(self) -> None:
        """Write after changes until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if self._in_burst():
                await self._settle()
            self._since = None
            if not await self.write_stale():
                await anyio.sleep(self.retry_interval)
                self.notify()

    def _in_burst(self) -> bool:
        last = self._last_write
        return last is not None and time.monotonic() - last < self.quiet

    async def _settle(self) -> None:
        """Wait until no change arrived for ``quiet`` seconds, or ``max_delay`` since the
        first unwritten one."""
        since = self._since if self._since is not None else time.monotonic()
        deadline = since + self.max_delay
        while (left := deadline - time.monotonic()) > 0:
            with anyio.move_on_after(min(self.quiet, left)):
                await self._wake.wait()
                self._wake = anyio.Event()
                continue
            return

    async def write_stale(self) -> bool:
        """Write the current list into every local ingress that holds another; False when the
        store failed (logged; the caller retries)."""
        written: list[str] = []
        healthy = True
        entries = self.index.entries()
        for ingress in self.index.stale():
            try:
                stored = await self._store.update(
                    msgspec.structs.replace(ingress.resource, available_services=entries),
                    version=ingress.version,
                )
            except (ConflictError, NotFoundError):
                # Another instance (or the ingress's own registration) wrote first: the watch
                # brings that version, and the index compares again then.
                self.conflicts += 1
                continue
            except (StoreError, ValidationError) as error:
                log.warning(
                    "could not update ZoneIngress available services",
                    extra=fields(name=ingress.resource.name, error=str(error)),
                )
                healthy = False
                continue
            self.writes += 1
            written.append(ingress.resource.name)
            resource = stored.resource
            assert isinstance(resource, type(ingress.resource))
            # What this instance wrote is its own view: later writes may build on it, unless
            # the engine already saw a newer version meanwhile.
            if self.index.ingresses.get(resource.name) is ingress:
                self.index.ingresses[resource.name] = LocalIngress(resource, stored.meta.version)
        self.passes += 1
        if written:
            self._last_write = time.monotonic()
            log.info(
                "updated ZoneIngress available services",
                extra=fields(zone_ingresses=",".join(written), services=len(entries)),
            )
        return healthy
