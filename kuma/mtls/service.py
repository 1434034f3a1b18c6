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
from collections.abc import Callable, Iterable

import anyio

from kuma.resources import Dataplane
from kuma.resources.model import SERVICE_TAG
from kuma.store import Operation, ResourceEvent, Store

from .authority import CaKeeper
from .identities import Identities, Need
from .issuer import WorkloadKeyType
from .sds import MtlsSecretSource


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
    ) -> None:
        self.identities = Identities(key_type=key_type, budget=budget, rng=rng)
        self.source = MtlsSecretSource(self.identities, self._need)
        self.identities.on_change = self._identities_changed
        self.keeper = CaKeeper(store, self.identities.set_ca, on_dataplane=self._on_dataplane)
        #: Told which services of a PERMISSIVE mesh may have changed TLS readiness (the
        #: runtime passes them to the engine, which rebuilds their clusters if so).
        self.on_readiness: Callable[[str, set[str]], None] | None = None
        #: node id → what its certificate must say (every Dataplane in the store: small, and
        #: needed the moment its proxy connects).
        self._needs: dict[str, Need] = {}

    def identity_ready(self, node_id: str) -> bool:
        """Whether the proxy holds a certificate of its mesh's current CA (TLS readiness)."""
        return self.identities.is_current(node_id)

    def _identities_changed(self, nodes: Iterable[str]) -> None:
        nodes = list(nodes)
        self.source.changed(nodes)
        if self.on_readiness is None:
            return
        touched: dict[str, set[str]] = {}
        for node_id in nodes:
            need = self._needs.get(node_id)
            if need is None or not self.keeper.permissive(need.mesh):
                continue
            touched.setdefault(need.mesh, set()).update(dict(need.tags).get(SERVICE_TAG, ()))
        for mesh, names in touched.items():
            self.on_readiness(mesh, names)

    def _need(self, node_id: str) -> Need | None:
        return self._needs.get(node_id)

    def _on_dataplane(self, event: ResourceEvent) -> None:
        dataplane = event.resource
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
            await self.keeper.run()
            tg.cancel_scope.cancel()
