"""What a batch of inputs invalidated, before anyone asks which proxies that touches.

Input handlers (``handlers/``) fill one :class:`Invalidation` per batch; the engine then asks
the :class:`~.proxy_index.ProxyIndex` which connected proxies each part touches. Every field is
a *reason* a proxy's desired state may be stale, named by the input that changed, never by a
proxy list computed by scanning.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from kuma.xds.node_id import ProxyId


class Invalidation:
    __slots__ = ("dataplanes", "meshes", "selections", "services", "vips")

    def __init__(self) -> None:
        #: mesh → services whose endpoints or membership changed (their shared Cluster and
        #: ClusterLoadAssignment are rebuilt; their consumers patched or re-assembled).
        self.services: dict[str, set[str]] = {}
        #: Proxies whose own Dataplane changed (re-assembled if connected).
        self.dataplanes: set[ProxyId] = set()
        #: Meshes whose mesh-wide inputs changed (the Mesh resource): all their proxies.
        self.meshes: set[str] = set()
        #: Meshes whose stored VIP allocation changed (their transparent proxies, if the VIPs
        #: they see change).
        self.vips: set[str] = set()
        #: Keys of the :class:`~.proxy_index.ProxyIndex` selection slot (e.g. a policy):
        #: every proxy selected by one of them is re-assembled.
        self.selections: set[Hashable] = set()

    def touch_services(self, mesh: str, services: Iterable[str]) -> None:
        self.services.setdefault(mesh, set()).update(services)

    def merge(self, other: Invalidation) -> None:
        for mesh, services in other.services.items():
            self.touch_services(mesh, services)
        self.dataplanes |= other.dataplanes
        self.meshes |= other.meshes
        self.vips |= other.vips
        self.selections |= other.selections

    def __bool__(self) -> bool:
        return bool(self.services or self.dataplanes or self.meshes or self.vips or self.selections)
