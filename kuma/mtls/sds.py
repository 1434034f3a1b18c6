"""The SDS source: each proxy's ``identity_cert:secret:<mesh>`` and ``mesh_ca:secret:<mesh>``,
served on the proxy's ADS stream beside the engine's resources (a ``SecretSource`` of the
composite config source).

A proxy has Secrets only while the engine says it references them (``Identities.set_need``)
and its certificate is issued. A rotation changes the identity Secret of that proxy only; a
CA change changes the CA Secret of the mesh's proxies (built once per mesh and CA).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager

from kuma.xds.generate import types
from kuma.xds.generate.tls import identity_secret, mesh_ca_secret
from kuma.xds.proxy_metadata import ProxyMetadata
from kuma.xds.secrets import SecretWatchBase
from kuma.xds.snapshot import VersionedResource, versioned

from .authority import MeshCa
from .identities import Identities, Issued, Need

_NONE: Mapping[str, VersionedResource] = {}


class SecretWatch(SecretWatchBase):
    """One stream's view of one proxy's Secrets."""

    def __init__(self, source: MtlsSecretSource, node_id: str) -> None:
        super().__init__(node_id)
        self._source = source

    def resources(self, type_url: str) -> Mapping[str, VersionedResource]:
        if type_url != types.SECRET:
            return _NONE
        return self._source.secrets_of(self._node_id)


class MtlsSecretSource:
    """``needs(node_id)``: what the proxy's certificate must carry (its mesh and tags), or None
    while its Dataplane is unknown; asked when the proxy's first stream opens and whenever
    :meth:`refresh` is called for it. A proxy's identity exists only while it is connected."""

    def __init__(
        self, identities: Identities, needs: Callable[[str], Need | None] | None = None
    ) -> None:
        self.identities = identities
        self._needs = needs
        self._watches: dict[str, list[SecretWatch]] = {}
        #: node id → the Secret names last served (so removals are announced too).
        self._served: dict[str, frozenset[str]] = {}
        self._ca_resources: dict[str, tuple[MeshCa, VersionedResource]] = {}
        self._identity_resources: dict[str, tuple[Issued, VersionedResource]] = {}
        identities.on_change = self.changed

    @asynccontextmanager
    async def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> AsyncIterator[SecretWatch]:
        watch = SecretWatch(self, node_id)
        first = node_id not in self._watches
        self._watches.setdefault(node_id, []).append(watch)
        if first:
            self.refresh(node_id)
        try:
            yield watch
        finally:
            watches = self._watches.get(node_id, [])
            if watch in watches:
                watches.remove(watch)
            if not watches:
                self._watches.pop(node_id, None)
                self._served.pop(node_id, None)
                self._identity_resources.pop(node_id, None)
                self.identities.forget(node_id)

    def connected(self, node_id: str) -> bool:
        return node_id in self._watches

    def refresh(self, node_id: str) -> None:
        """The proxy's tags may have changed: tell the identities what it needs now."""
        if self._needs is not None and node_id in self._watches:
            self.identities.set_need(node_id, self._needs(node_id))

    def secrets_of(self, node_id: str) -> Mapping[str, VersionedResource]:
        issued = self.identities.issued(node_id)
        if issued is None:
            return _NONE
        mesh = issued.need.mesh
        ca = self.identities.ca(mesh)
        if ca is None:
            return _NONE
        identity = self._identity_resource(node_id, issued)
        roots = self._ca_resource(mesh, ca)
        return {identity.name: identity, roots.name: roots}

    def changed(self, nodes: Iterable[str]) -> None:
        """The identities of ``nodes`` (or their mesh's CA) changed: tell their streams."""
        for node_id in nodes:
            watches = self._watches.get(node_id)
            if not watches:
                continue
            names = frozenset(self.secrets_of(node_id))
            marked = names | self._served.get(node_id, frozenset())
            self._served[node_id] = names
            for watch in watches:
                watch.mark(marked)

    def _identity_resource(self, node_id: str, issued: Issued) -> VersionedResource:
        cached = self._identity_resources.get(node_id)
        if cached is not None and cached[0] is issued:
            return cached[1]
        identity = issued.identity
        message = identity_secret(issued.need.mesh, identity.cert_pem, identity.key_pem)
        resource = versioned(types.SECRET, message.name, message)
        if node_id in self._watches:
            self._identity_resources[node_id] = (issued, resource)
        return resource

    def _ca_resource(self, mesh: str, ca: MeshCa) -> VersionedResource:
        cached = self._ca_resources.get(mesh)
        if cached is not None and cached[0] is ca:
            return cached[1]
        message = mesh_ca_secret(mesh, [ca.roots_pem])
        resource = versioned(types.SECRET, message.name, message)
        self._ca_resources[mesh] = (ca, resource)
        return resource
