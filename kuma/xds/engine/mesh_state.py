"""What the engine knows about one mesh: its Dataplanes and the indexes derived from them.

Applying a Dataplane change updates the indexes and reports which services it touched, so the
engine recomputes only those services' shared resources and only their consumers.
Also the :class:`~kuma.xds.generate.proxy.MeshView` that generation reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from kuma.policies.matching import ordered
from kuma.resources import Dataplane, Mesh, MeshGateway, ZoneEgress, ZoneIngress
from kuma.resources.model import Policy
from kuma.xds.generate.cross_zone import (
    Coordinates,
    LocalityPlan,
    locality_plan,
    through_egresses,
)
from kuma.xds.generate.endpoints import Endpoint, endpoints_of, service_protocol
from kuma.xds.generate.external import ExternalEndpoint, external_protocol
from kuma.xds.generate.external_vips import ExternalVip, external_vip_entries
from kuma.xds.generate.via_egress import EgressAddress

from .external_services import ExternalServices


def _member_services(dataplane: Dataplane) -> set[str]:
    """Services a Dataplane makes exist in the mesh (inbounds not Ignored), for VIPs."""
    networking = dataplane.networking
    if networking is None or networking.gateway is not None:
        return set()
    return {i.service for i in networking.inbound if i.service and i.state != "Ignored"}


#: node id → whether the proxy holds a certificate of its mesh's current CA.
IdentityReady = Callable[[str], bool]


def _tags_of(dataplane: Dataplane | None) -> set[tuple[str, str]]:
    if dataplane is None or dataplane.networking is None:
        return set()
    networking = dataplane.networking
    tags = {item for inbound in networking.inbound for item in inbound.tags.items()}
    if networking.gateway is not None:
        tags.update(networking.gateway.tags.items())
    return tags


class ServiceEntry:
    """One service: its healthy endpoints per contributing Dataplane and per remote ingress,
    and what derives from them (sorted endpoints and protocol, with or without the remote
    ones, computed lazily and cached until the next change)."""

    __slots__ = ("_endpoints", "_protocol", "by_dataplane", "members", "remote")

    def __init__(self) -> None:
        self.by_dataplane: dict[str, tuple[Endpoint, ...]] = {}
        #: Other zones' ingresses (by public address) reaching the service (cross_zone.py).
        self.remote: dict[Coordinates, tuple[Endpoint, ...]] = {}
        #: Dataplanes with a non-Ignored inbound of this service (it exists while non-empty).
        self.members: set[str] = set()
        #: Keyed by (remote endpoints used, the egresses they go through or None).
        self._endpoints: dict[tuple[bool, tuple[Coordinates, ...] | None], tuple[Endpoint, ...]]
        self._endpoints = {}
        self._protocol: dict[bool, str] = {}

    def invalidate(self) -> None:
        self._endpoints = {}
        self._protocol = {}

    def endpoints(
        self, remote: bool, via: tuple[Coordinates, ...] | None = None
    ) -> tuple[Endpoint, ...]:
        """``via``: the zone's egresses the remote endpoints go through (``cross_zone.py``)."""
        cached = self._endpoints.get((remote, via))
        if cached is None:
            found = [e for g in self.by_dataplane.values() for e in g]
            if remote:
                others = (e for g in self.remote.values() for e in g)
                found.extend(others if via is None else through_egresses(others, via))
            cached = tuple(sorted(found, key=Endpoint.sort_key))
            self._endpoints[(remote, via)] = cached
        return cached

    def protocol(self, remote: bool) -> str:
        cached = self._protocol.get(remote)
        if cached is None:
            cached = self._protocol[remote] = service_protocol(self.endpoints(remote))
        return cached

    @property
    def empty(self) -> bool:
        return not self.members and not self.by_dataplane and not self.remote


class CrossZone:
    """What every mesh's ClusterLoadAssignments share about other zones (one per engine, kept
    by the ZoneIngress handler): the local zone, and how many remote ingress address:port
    pairs list services (local endpoints weigh that much: cross_zone.py)."""

    __slots__ = ("instances", "zone")

    def __init__(self) -> None:
        self.zone = ""
        self.instances = 0


class MeshState:
    """The Dataplanes of one mesh and their service index. Implements MeshView."""

    def __init__(
        self,
        name: str,
        identity_ready: IdentityReady | None = None,
        egresses: Mapping[str, EgressAddress] | None = None,
        cross_zone: CrossZone | None = None,
    ) -> None:
        self.name = name
        #: The zone's ZoneEgresses by name (shared by every mesh: ``Meshes.zone_egresses``).
        self._egresses: Mapping[str, EgressAddress] = {} if egresses is None else egresses
        #: What every mesh shares about other zones (``Meshes.cross_zone``).
        self.cross_zone = cross_zone or CrossZone()
        #: Whether a proxy (node id) holds a certificate of its mesh's current CA: PERMISSIVE
        #: TLS readiness (see :meth:`tls_ready`); None: no certificates, nothing is ready.
        self.identity_ready = identity_ready
        self.mesh: Mesh | None = None
        self.dataplanes: dict[str, Dataplane] = {}
        self._services: dict[str, ServiceEntry] = {}
        #: Service → how many other zones' ingresses list it (handlers/remote_services.py):
        #: such a service exists here for transparent proxies even without a local member.
        self._listed: dict[str, int] = {}
        #: The mesh's MeshVips resource as stored (kuma/cp/vips.py allocates and writes it).
        self._stored_vips: Mapping[str, str] = {}
        #: What proxies see: the stored VIPs of the services that exist. An allocation may
        #: lag the service set (a new service has no VIP yet) or lead it (the allocator saw a
        #: Dataplane this engine has not yet): both sides agree once both events are applied.
        self._vips: dict[str, str] = {}
        #: The stored VIPs of ExternalServices' host names (``MeshVips.hosts``).
        self._stored_hosts: Mapping[str, str] = {}
        #: What transparent proxies see of the ExternalServices (``external_vips.py``).
        self._external_vips: tuple[ExternalVip, ...] = ()
        self._vips_dirty = False
        #: (tag, value) of any inbound or gateway → names of the Dataplanes carrying it: which
        #: Dataplanes a policy's targetRef may select, without scanning the mesh.
        self._by_tag: dict[tuple[str, str], set[str]] = {}
        #: Policy kind → name → policy.
        self._policies: dict[str, dict[str, Policy]] = {}
        self._policy_lists: dict[str, tuple[Policy, ...]] | None = None
        #: The mesh's ExternalServices and its Secrets' values (handlers/external_service.py).
        self.externals = ExternalServices(name)
        #: The mesh's MeshGateways by name (handlers/mesh_gateway.py, kuma/xds/gateway).
        self.gateways: dict[str, MeshGateway] = {}

    # --- policies --------------------------------------------------------------------------

    def put_policy(self, policy: Policy) -> Policy | None:
        """Add or replace a policy; return the version it replaced."""
        self._policy_lists = None
        previous = self._policies.setdefault(policy.TYPE, {}).get(policy.name)
        self._policies[policy.TYPE][policy.name] = policy
        return previous

    def remove_policy(self, kind: str, name: str) -> Policy | None:
        self._policy_lists = None
        return self._policies.get(kind, {}).pop(name, None)

    def policy(self, kind: str, name: str) -> Policy | None:
        return self._policies.get(kind, {}).get(name)

    def with_tags(self, tags: Iterable[tuple[str, str]]) -> Iterable[str]:
        """Names of the Dataplanes carrying every one of ``tags`` on an inbound or their
        gateway (a superset of those a selector of these tags matches); all when none."""
        wanted = list(tags)
        if not wanted:
            return list(self.dataplanes)
        sets = [self._by_tag.get(tag, set()) for tag in wanted]
        smallest = min(sets, key=len)
        return [name for name in smallest if all(name in other for other in sets)]

    def policies_by_kind(self) -> Mapping[str, Sequence[Policy]]:
        """Every policy of the mesh by kind, in Kuma's order (``resolve(..., presorted=True)``)."""
        if self._policy_lists is None:
            self._policy_lists = {
                k: tuple(ordered(v.values())) for k, v in self._policies.items() if v
            }
        return self._policy_lists

    # --- MeshView ------------------------------------------------------------------------

    def endpoints(self, service: str) -> Sequence[Endpoint]:
        entry = self._services.get(service)
        if entry is None:
            return ()
        plan = self.locality()
        return entry.endpoints(plan.remote, plan.egresses)

    def remote_endpoints(self, service: str) -> tuple[Endpoint, ...]:
        """Other zones' ingresses reaching the service, as they list it (what this zone's
        egress leads to: ``generate/zone_egress.py``)."""
        entry = self._services.get(service)
        if entry is None or not entry.remote:
            return ()
        return tuple(sorted((e for g in entry.remote.values() for e in g), key=Endpoint.sort_key))

    def remote_services(self) -> list[str]:
        """The services other zones' ingresses list in this mesh."""
        return [s for s, entry in self._services.items() if entry.remote]

    def local_endpoints(self, service: str) -> Sequence[Endpoint]:
        """This zone's endpoints only (what its own ZoneIngress leads to)."""
        entry = self._services.get(service)
        return () if entry is None else entry.endpoints(False)

    def protocol(self, service: str) -> str:
        external = self.externals.endpoints(service)
        if external:
            return external_protocol(external)
        entry = self._services.get(service)
        return service_protocol(()) if entry is None else entry.protocol(self.locality().remote)

    def locality(self) -> LocalityPlan:
        cross_zone = self.cross_zone
        return locality_plan(
            self.mesh, cross_zone.zone, cross_zone.instances, self._egresses.values()
        )

    def services(self) -> Iterable[str]:
        local = (s for s, entry in self._services.items() if entry.members)
        return {*local, *self._listed} if self._listed else local

    def vip(self, service: str) -> str | None:
        return self._vips.get(service)

    def external(self, service: str) -> Sequence[ExternalEndpoint]:
        return self.externals.endpoints(service)

    def external_vips(self) -> Sequence[ExternalVip]:
        return self._external_vips

    def zone_egresses(self) -> Sequence[EgressAddress]:
        return sorted(set(self._egresses.values()))

    def tls_ready(self, service: str) -> bool:
        """Kuma's TLS readiness, for PERMISSIVE meshes: every Dataplane providing the service
        holds a certificate of the mesh's CA, so its inbounds accept the mesh's mTLS. Clients
        originate mTLS to a service only once it is ready (plaintext until then, which a
        PERMISSIVE inbound accepts)."""
        ready = self.identity_ready
        entry = self._services.get(service)
        if ready is None or entry is None or not entry.members:
            return False
        return all(ready(f"{self.name}.{member}") for member in entry.members)

    def set_stored_vips(
        self, vips: Mapping[str, str], hosts: Mapping[str, str] | None = None
    ) -> None:
        """The mesh's MeshVips changed (``{}``: deleted); see :meth:`refresh_vips`."""
        hosts = {} if hosts is None else hosts
        if vips != self._stored_vips or hosts != self._stored_hosts:
            self._stored_vips = vips
            self._stored_hosts = hosts
            self._vips_dirty = True

    def externals_changed(self) -> None:
        """An ExternalService came, changed or went: its VIP outbounds may have (see
        :meth:`refresh_vips`)."""
        self._vips_dirty = True

    # --- updates -------------------------------------------------------------------------

    def put(self, dataplane: Dataplane) -> set[str]:
        """Add or replace a Dataplane; return the services whose endpoints or membership
        changed."""
        previous = self.dataplanes.get(dataplane.name)
        self.dataplanes[dataplane.name] = dataplane
        self._retag(dataplane.name, previous, dataplane)
        return self._reindex(dataplane.name, previous, dataplane)

    def remove(self, name: str) -> set[str]:
        previous = self.dataplanes.pop(name, None)
        self._retag(name, previous, None)
        return self._reindex(name, previous, None) if previous is not None else set()

    def _retag(self, name: str, old: Dataplane | None, new: Dataplane | None) -> None:
        before, after = _tags_of(old), _tags_of(new)
        for tag in before - after:
            holders = self._by_tag.get(tag)
            if holders is not None:
                holders.discard(name)
                if not holders:
                    del self._by_tag[tag]
        for tag in after - before:
            self._by_tag.setdefault(tag, set()).add(name)

    def _reindex(self, name: str, old: Dataplane | None, new: Dataplane | None) -> set[str]:
        old_endpoints = _grouped(old)
        new_endpoints = _grouped(new)
        old_members = _member_services(old) if old is not None else set()
        new_members = _member_services(new) if new is not None else set()
        touched: set[str] = set()
        for service in old_endpoints.keys() | new_endpoints.keys():
            before = old_endpoints.get(service, ())
            after = new_endpoints.get(service, ())
            if before == after:
                continue
            entry = self._services.setdefault(service, ServiceEntry())
            if after:
                entry.by_dataplane[name] = after
            else:
                entry.by_dataplane.pop(name, None)
            entry.invalidate()
            touched.add(service)
        for service in old_members ^ new_members:
            entry = self._services.setdefault(service, ServiceEntry())
            if service in new_members:
                entry.members.add(name)
            else:
                entry.members.discard(name)
            if not entry.members or len(entry.members) == 1:
                # The service may have appeared in or vanished from the mesh.
                self._vips_dirty = True
            touched.add(service)
        for service in touched:
            if self._services[service].empty:
                del self._services[service]
        return touched

    def list_remote(self, service: str, listed: bool) -> None:
        """Another zone's ingress started (``listed``) or stopped listing ``service``."""
        count = self._listed.get(service, 0) + (1 if listed else -1)
        if count > 0:
            self._listed[service] = count
        else:
            self._listed.pop(service, None)
        if count <= 1:
            # The service may have appeared in or vanished from the mesh (see refresh_vips).
            self._vips_dirty = True

    def put_remote(self, service: str, at: Coordinates, endpoints: tuple[Endpoint, ...]) -> bool:
        """Set (empty: drop) what the remote ingress at ``at`` gives ``service``; True if it
        changed."""
        entry = self._services.get(service)
        if (entry.remote.get(at, ()) if entry is not None else ()) == endpoints:
            return False
        entry = self._services.setdefault(service, ServiceEntry())
        if endpoints:
            entry.remote[at] = endpoints
        else:
            entry.remote.pop(at, None)
        entry.invalidate()
        if entry.empty:
            del self._services[service]
        return True

    def indexed_services(self) -> list[str]:
        """Every service the mesh indexes (local endpoints, members or remote ones)."""
        return list(self._services)

    def refresh_vips(self) -> bool:
        """Recompute the VIPs proxies see if the service set or the stored allocation may have
        changed; True if any VIP appeared, vanished or moved (transparent proxies of the mesh
        then need re-assembly)."""
        if not self._vips_dirty:
            return False
        self._vips_dirty = False
        stored = self._stored_vips
        services = set(self.services())
        vips = {s: vip for s in services if (vip := stored.get(s)) is not None}
        externals = (
            external_vip_entries(self.externals.resources(), stored, self._stored_hosts, services)
            if self.externals
            else ()
        )
        if vips == self._vips and externals == self._external_vips:
            return False
        self._vips = vips
        self._external_vips = externals
        return True


def _grouped(dataplane: Dataplane | None) -> dict[str, tuple[Endpoint, ...]]:
    if dataplane is None:
        return {}
    grouped: dict[str, list[Endpoint]] = {}
    for service, endpoint in endpoints_of(dataplane):
        grouped.setdefault(service, []).append(endpoint)
    return {s: tuple(sorted(group, key=Endpoint.sort_key)) for s, group in grouped.items()}


class Meshes:
    """Every mesh's state, by name; a mesh's state exists from its first mention on (a
    Dataplane may arrive before its Mesh)."""

    def __init__(self, identity_ready: IdentityReady | None = None) -> None:
        self._by_name: dict[str, MeshState] = {}
        self._identity_ready = identity_ready
        #: This zone's ZoneEgresses by name (handlers/zone_egress.py), read by every mesh.
        self.zone_egresses: dict[str, EgressAddress] = {}
        #: The same ZoneEgresses as stored: the egress proxies this control plane serves.
        self.zone_egress_proxies: dict[str, ZoneEgress] = {}
        #: Every stored ZoneIngress by name (zone proxies are not in a mesh).
        self.zone_ingresses: dict[str, ZoneIngress] = {}
        #: Other zones' ingresses, as every mesh's endpoints see them (handlers/zone_ingress.py).
        self.cross_zone = CrossZone()

    def __getitem__(self, name: str) -> MeshState:
        state = self._by_name.get(name)
        if state is None:
            state = MeshState(name, self._identity_ready, self.zone_egresses, self.cross_zone)
            self._by_name[name] = state
        return state

    def states(self) -> Iterable[MeshState]:
        return self._by_name.values()

    def get(self, name: str) -> MeshState | None:
        return self._by_name.get(name)
