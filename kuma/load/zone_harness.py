"""One zone of a multi-zone run: the single-zone :class:`~.session.Harness` (its store writer,
workers, sidecars, probes and convergence checks) with a zone kuma-cp as the control plane.

What differs from a single-zone run is only the order and the place things are written: the
zone's kuma-cp starts first (the Mesh is global's and comes over KDS; the sidecars' tokens are
signed with the key the zone received from global, so a run also proves the key arrived), then
its Dataplanes and its ZoneIngress go into the zone's own store (a directory, as kuma-load
writes Dataplanes), and the reference is the zone's (:class:`~.zone_reference.ZoneReference`:
this zone's tag, the other zone's ingress endpoints).

The ZoneIngress is registered, not simulated: it is written with its address and no
``availableServices``; the zone's kuma-cp fills the list from its Dataplanes and KDS carries it
to global and on to the other zone, which is the path a cross-zone change travels.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from .pool import Pool
from .session import Harness, Options
from .stores import open_writer
from .zone_reference import RemoteZone, ZoneReference

INGRESS_NAME = "ingress"
INGRESS_ADDRESS = "127.0.0.1"


def ingress_document(port: int) -> dict[str, Any]:
    """A zone's ZoneIngress as an operator registers it (Kuma's universal ZoneIngress)."""
    return {
        "type": "ZoneIngress",
        "name": INGRESS_NAME,
        "networking": {
            "address": INGRESS_ADDRESS,
            "port": port,
            "advertisedAddress": INGRESS_ADDRESS,
            "advertisedPort": port,
        },
    }


class ZoneHarness(Harness):
    def __init__(self, options: Options, *, zone: str, ingress_port: int) -> None:
        super().__init__(options)
        self.zone = zone
        self.ingress_port = ingress_port
        #: The other zone as this one sees it (set by the driver before :meth:`setup`).
        self.remote: RemoteZone | None = None

    def as_remote(self) -> RemoteZone:
        """This zone as the other one sees it: its Dataplanes behind its ingress."""
        return RemoteZone(self.zone, self.plan, self.revisions, INGRESS_ADDRESS, self.ingress_port)

    @property
    def api_port(self) -> int:
        return self._api_port

    async def setup(self, *, sidecars: bool = True) -> None:
        options = self.options
        if options.harness_cpus:
            os.sched_setaffinity(0, options.harness_cpus)
        self._temp = tempfile.TemporaryDirectory(prefix=f"kuma-load-{self.zone}-")
        self.location = self._temp.name
        self.writer = open_writer("directory", self.location)
        await self.start_cp()
        started = time.perf_counter()
        documents = [ingress_document(self.ingress_port)]
        documents += [self.revisions.document(i) for i in range(self.count)]
        await self.writer.write_all(documents)
        self.notes["write_seconds"] = round(time.perf_counter() - started, 2)
        if options.exact:
            if self.remote is None:
                raise ValueError(f"{self.zone}: the other zone is not set")
            started = time.perf_counter()
            self.reference = ZoneReference(
                self.plan, self.revisions, zone=self.zone, remote=self.remote
            )
            self.notes["reference_seconds"] = round(time.perf_counter() - started, 2)
        if sidecars:
            await self._start_sidecars()

    async def _start_sidecars(self) -> None:
        self.pool = Pool(self.options.workers, self.options.harness_cpus)
        await self._init_sidecars()
