"""The SDS source: each proxy's ``identity_cert:secret:<mesh>`` and ``mesh_ca:secret:<mesh>``,
served on the proxy's ADS stream beside the engine's resources (a ``SecretSource`` of the
composite config source).

A proxy has Secrets only while the engine says it references them (``Identities.set_need``)
and its certificate is issued. A rotation changes the identity Secret of that proxy only; a
CA change changes the CA Secret of the mesh's proxies (built once per mesh and CA).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from kuma.resources.model import SERVICE_TAG
from kuma.xds.generate import types
from kuma.xds.generate.tls import mesh_ca_secret
from kuma.xds.generate.via_egress import ZONE_EGRESS_SERVICE
from kuma.xds.proxy_metadata import ProxyMetadata
from kuma.xds.secrets import SecretWatchBase
from kuma.xds.snapshot import VersionedResource, versioned
from kuma.xds.watch_context import WatchContext

from .authority import MeshCa
from .identities import Identities, Need

_NONE: Mapping[str, VersionedResource] = {}


def egress_identity_key(node_id: str, mesh: str) -> str:
    """A zone egress's identity in ``mesh`` (node ids of sidecars never start with a dot)."""
    return f"{node_id}/{mesh}"


def holder_of(key: str) -> str:
    """The node id an identity key belongs to."""
    return key.rpartition("/")[0] if key.startswith(".") and "/" in key else key


class SecretWatch(SecretWatchBase):
    """One stream's view of one proxy's Secrets."""

    __slots__ = ("_source",)

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
        #: One frozenset per distinct set of names (a mesh's proxies all have the same two).
        self._name_sets: dict[frozenset[str], frozenset[str]] = {}
        self._ca_resources: dict[str, tuple[MeshCa, VersionedResource]] = {}
        identities.on_change = self.changed
        #: Node ids (``.<name>``) of the stored ZoneEgresses (``MtlsService`` keeps them).
        self.zone_egresses: set[str] = set()
        #: A connected egress's node id → its identity keys (one per mesh).
        self._egress_keys: dict[str, set[str]] = {}

    def watch_proxy(
        self, node_id: str, metadata: ProxyMetadata | None = None
    ) -> WatchContext[SecretWatch]:
        """Follow one proxy's Secrets while the context is open (one slotted object per
        stream, :mod:`kuma.xds.watch_context`)."""
        return WatchContext(self._open, self._close, node_id, metadata)

    def _open(self, node_id: str, metadata: ProxyMetadata | None) -> SecretWatch:
        watch = SecretWatch(self, node_id)
        first = node_id not in self._watches
        self._watches.setdefault(node_id, []).append(watch)
        if first:
            self.refresh(node_id)
        return watch

    def _close(self, watch: SecretWatch) -> None:
        node_id = watch.node_id
        watches = self._watches.get(node_id, [])
        if watch in watches:
            watches.remove(watch)
        if not watches:
            self._watches.pop(node_id, None)
            self._served.pop(node_id, None)
            self.identities.forget(node_id)
            for key in self._egress_keys.pop(node_id, set()):
                self.identities.forget(key)

    def connected(self, node_id: str) -> bool:
        return node_id in self._watches

    def refresh(self, node_id: str) -> None:
        """The proxy's tags may have changed: tell the identities what it needs now."""
        if node_id in self.zone_egresses or node_id in self._egress_keys:
            self._refresh_egress(node_id)
        elif self._needs is not None and node_id in self._watches:
            self.identities.set_need(node_id, self._needs(node_id))

    def _refresh_egress(self, node_id: str) -> None:
        """A zone egress (node ``.<name>``) holds one identity per mesh with a CA, each
        under its own key ``<node id>/<mesh>`` (Kuma issues the egress a certificate of
        every mesh: ``spiffe://<mesh>/zone-egress``)."""
        wanted: dict[str, Need] = {}
        if node_id in self._watches and node_id in self.zone_egresses:
            for mesh in self.identities.meshes():
                wanted[egress_identity_key(node_id, mesh)] = Need.of(
                    mesh, {SERVICE_TAG: {ZONE_EGRESS_SERVICE}}
                )
        for key in self._egress_keys.get(node_id, set()) - set(wanted):
            self.identities.forget(key)
        for key, need in wanted.items():
            self.identities.set_need(key, need)
        if wanted:
            self._egress_keys[node_id] = set(wanted)
        else:
            self._egress_keys.pop(node_id, None)
        self.changed((node_id,))

    def refresh_zone_egresses(self) -> None:
        """The meshes with a CA changed: the connected egresses' identities follow."""
        for node_id in [n for n in self._watches if n in self.zone_egresses]:
            self._refresh_egress(node_id)

    def secrets_of(self, node_id: str) -> Mapping[str, VersionedResource]:
        keys = self._egress_keys.get(node_id)
        if keys is not None:
            found: dict[str, VersionedResource] = {}
            for key in sorted(keys):
                found.update(self._secrets_of_identity(key))
            return found
        return self._secrets_of_identity(node_id)

    def _secrets_of_identity(self, node_id: str) -> Mapping[str, VersionedResource]:
        issued = self.identities.issued(node_id)
        if issued is None:
            return _NONE
        mesh = issued.need.mesh
        ca = self.identities.ca(mesh)
        if ca is None:
            return _NONE
        identity = issued.secret
        roots = self._ca_resource(mesh, ca)
        return {identity.name: identity, roots.name: roots}

    def changed(self, nodes: Iterable[str]) -> None:
        """The identities of ``nodes`` (or their mesh's CA) changed: tell their streams."""
        for key in nodes:
            node_id = holder_of(key)
            watches = self._watches.get(node_id)
            if not watches:
                continue
            names = self._name_set(frozenset(self.secrets_of(node_id)))
            marked = names | self._served.get(node_id, frozenset())
            self._served[node_id] = names
            for watch in watches:
                watch.mark(marked)

    def _name_set(self, names: frozenset[str]) -> frozenset[str]:
        shared = self._name_sets.setdefault(names, names)
        if len(self._name_sets) > 1024:  # bounded: sets of names of meshes long gone
            self._name_sets.clear()
        return shared

    def _ca_resource(self, mesh: str, ca: MeshCa) -> VersionedResource:
        cached = self._ca_resources.get(mesh)
        if cached is not None and cached[0] is ca:
            return cached[1]
        message = mesh_ca_secret(mesh, [ca.roots_pem])
        resource = versioned(types.SECRET, message.name, message)
        self._ca_resources[mesh] = (ca, resource)
        return resource
