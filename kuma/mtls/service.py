"""Mesh mTLS as one component of kuma-cp: the CA keeper, the workload identities and the SDS
source, wired together.

* :class:`~.authority.CaKeeper` follows the store: Meshes and their CA Secrets (the CA of each
  mesh with mTLS on goes to the identities), and Dataplanes (each proxy's tags, kept here).
* :class:`~.identities.Identities` issues and rotates the certificates of connected proxies.
* :class:`~.sds.MtlsSecretSource` serves them over SDS; the runtime routes the Secret type URL
  to it in the composite config source. It asks this service what a proxy needs when the
  proxy connects, and this service refreshes that when the proxy's Dataplane changes.

Everything a certificate depends on is here; the engine only generates the listeners and
clusters that reference the Secrets (from the Mesh's mTLS settings).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable

import anyio

from kuma.resources import Dataplane, ZoneEgress
from kuma.resources.model import SERVICE_TAG
from kuma.store import Operation, ResourceEvent, Store

from .authority import CaKeeper, MeshCa
from .identities import Identities, Need
from .issuer import WorkloadKeyType
from .sds import MtlsSecretSource

#: Seconds a proxy holds a certificate of its mesh's CA before it counts as TLS-ready.
READINESS_GRACE = 2.0


def dataplane_tags(dataplane: Dataplane) -> dict[str, set[str]]:
    """Kuma's ``Dataplane.TagSet()``: a gateway's tags, else every inbound's, merged."""
    networking = dataplane.networking
    if networking is None:
        return {}
    tag_maps = (
        [networking.gateway.tags]
        if networking.gateway is not None
        else [i.tags for i in networking.inbound]
    )
    merged: dict[str, set[str]] = {}
    for tags in tag_maps:
        for key, value in tags.items():
            merged.setdefault(key, set()).add(value)
    return merged


class MtlsService:
    def __init__(
        self,
        store: Store,
        *,
        key_type: WorkloadKeyType = "ECDSA",
        budget: float = 0.02,
        rng: random.Random | None = None,
        readiness_grace: float = READINESS_GRACE,
        create_cas: bool = True,
    ) -> None:
        """``create_cas`` False (a federated zone): the mesh CAs are global's (see
        :class:`~.authority.CaKeeper`)."""
        self.identities = Identities(key_type=key_type, budget=budget, rng=rng)
        self.source = MtlsSecretSource(self.identities, self._need)
        self.identities.on_change = self._identities_changed
        self.keeper = CaKeeper(
            store, self._set_ca, on_dataplane=self._on_dataplane, create=create_cas
        )
        #: Told which services of a PERMISSIVE mesh may have changed TLS readiness (the
        #: runtime passes them to the engine, which rebuilds their clusters if so).
        self.on_readiness: Callable[[str, set[str]], None] | None = None
        #: Told the node ids whose certificate was issued, rotated or dropped (the insight
        #: tracker: their insights' mTLS section changed).
        self.on_certificates: Callable[[list[str]], None] | None = None
        #: node id → what its certificate must say (every Dataplane in the store: small, and
        #: needed the moment its proxy connects).
        self._needs: dict[str, Need] = {}
        self._grace = readiness_grace
        #: (due (monotonic), mesh, services): readiness to re-check once the grace is over.
        self._due: list[tuple[float, str, set[str]]] = []
        self._due_added = anyio.Event()

    def identity_ready(self, node_id: str) -> bool:
        """TLS readiness of one proxy: it has held a certificate of its mesh's current CA for
        ``readiness_grace`` seconds, time for its Envoy to have applied the Secret and warmed
        its new listeners before clients start speaking mTLS to it (Kuma's readiness comes
        from insights resynced every few seconds: it lags the same way)."""
        if not self.identities.is_current(node_id):
            return False
        issued = self.identities.issued(node_id)
        return issued is not None and time.monotonic() - issued.held_since >= self._grace

    def _identities_changed(self, nodes: Iterable[str]) -> None:
        nodes = list(nodes)
        self.source.changed(nodes)
        if self.on_certificates is not None:
            self.on_certificates(nodes)
        now = time.monotonic()
        if self.on_readiness is None:
            return
        touched: dict[str, set[str]] = {}
        for node_id in nodes:
            need = self._needs.get(node_id)
            if need is None or not self.keeper.permissive(need.mesh):
                continue
            touched.setdefault(need.mesh, set()).update(dict(need.tags).get(SERVICE_TAG, ()))
        for mesh, names in touched.items():
            # Now (a proxy that lost its certificate is no longer ready) and after the grace
            # (one that got one becomes ready).
            self.on_readiness(mesh, names)
            self._due.append((now + self._grace, mesh, names))
        if touched:
            self._due_added.set()

    async def _readiness_timer(self) -> None:
        while True:
            if not self._due:
                self._due_added = anyio.Event()
                await self._due_added.wait()
                continue
            due, mesh, names = self._due[0]
            delay = due - time.monotonic()
            if delay > 0:
                await anyio.sleep(delay)
                continue
            self._due.pop(0)
            if self.on_readiness is not None:
                self.on_readiness(mesh, names)

    def _need(self, node_id: str) -> Need | None:
        return self._needs.get(node_id)

    def _set_ca(self, mesh: str, ca: MeshCa | None) -> None:
        had = mesh in self.identities.meshes()
        self.identities.set_ca(mesh, ca)
        if had != (ca is not None):
            self.source.refresh_zone_egresses()  # an egress holds an identity per mesh

    def _on_dataplane(self, event: ResourceEvent) -> None:
        dataplane = event.resource
        if isinstance(dataplane, ZoneEgress):
            node_id = f".{dataplane.name}"
            if event.operation is Operation.DELETE:
                self.source.zone_egresses.discard(node_id)
            else:
                self.source.zone_egresses.add(node_id)
            self.source.refresh(node_id)
            return
        assert isinstance(dataplane, Dataplane)
        node_id = f"{dataplane.mesh}.{dataplane.name}"
        if event.operation is Operation.DELETE:
            self._needs.pop(node_id, None)
        else:
            need = Need.of(dataplane.mesh, dataplane_tags(dataplane))
            if self._needs.get(node_id) == need:
                return
            self._needs[node_id] = need
        self.source.refresh(node_id)

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.identities.run)
            tg.start_soon(self._readiness_timer)
            await self.keeper.run()
            tg.cancel_scope.cancel()
