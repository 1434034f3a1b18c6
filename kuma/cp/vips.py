"""Virtual IPs for transparent proxying: allocated once per (mesh, service), kept in the store.

Each mesh's allocation is one global ``MeshVips`` resource named after the mesh (Kuma keeps the
same list in the Config ``kuma-<mesh>-dns-vips``). :class:`VipAllocator` follows the store and
writes that resource whenever the mesh's service set and the stored allocation disagree; the
engine serves only what is stored, so every kuma-cp instance on one store serves the same VIPs
and a restart changes nothing.

Rules (:func:`allocate`):

- an allocated VIP never moves while its service exists;
- a new service's first choice is a hash of (mesh, service) into 240.0.0.0/4, so an empty
  store or a lost allocation tends to give back the same addresses; on a collision with the
  *stored* allocation it probes forward (the next hash), so existing entries are never
  displaced;
- a service exists while a Dataplane has a non-Ignored inbound of it, an ExternalService
  tags it or another zone's ZoneIngress lists it in its ``availableServices`` (Kuma's
  allocator takes remote ingresses too, so a transparent proxy reaches a service only another
  zone has); an ExternalService's host name (a DNS name, without ``disableHostDNSEntry``) gets a
  VIP of its own too (``hosts``, Kuma's host entries), from another hash, never a service's;
- the VIP of a service (or host) that no longer exists is released on the allocator's next
  write for that mesh; the resource is deleted when the mesh has no service left. A service
  coming back takes its hash address again unless another service took it meanwhile.

Several instances on one store converge by compare-and-swap: a write carries the version it
was computed from; on a conflict the allocator re-reads and retries. A retry after a re-read
only *adds* VIPs: the re-read version may be ahead of this instance's view of the Dataplanes
(another instance saw a new service first), so entries this instance does not know of are
kept; releasing waits for the watch to deliver that version, which comes after the Dataplane
events it was computed from.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping

import anyio
from anyio.abc import TaskStatus

from kuma.resources import (
    Dataplane,
    ExternalService,
    MeshVips,
    ResourceKey,
    StoredResource,
    ValidationError,
    ZoneIngress,
)
from kuma.resources.validation import VIP_NETWORK
from kuma.resources.validation.common import is_dns_name
from kuma.resources.validation.external_service import split_host_port
from kuma.store import (
    ConflictError,
    NotFoundError,
    Operation,
    ResourceEvent,
    Store,
    StoreError,
    Synced,
    WatchItem,
)
from kuma.xds.generate.cross_zone import listed_services
from kuma.xds.generate.view import services_of

from .logs import fields

log = logging.getLogger("kuma.cp.vips")

_SIZE = VIP_NETWORK.num_addresses
_BASE = int(VIP_NETWORK.network_address)
#: Writes lost in a row before a mesh waits for the next store event (each loss means another
#: instance wrote, so it is progress, not a livelock).
MAX_ATTEMPTS = 16


def hashed_vip(mesh: str, service: str, attempt: int = 0, *, kind: str = "") -> str:
    """The ``attempt``-th choice of address for a service (0: its first choice); ``kind``
    ``"host"`` for an ExternalService host name (another hash, so a host never shares its
    service's first choice)."""
    key = f"{mesh}\x00{service}\x00{attempt}"
    if kind:
        key = f"{kind}\x00{key}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    # Skip the network's first and last address.
    return str(ipaddress.IPv4Address(_BASE + 1 + int.from_bytes(digest, "big") % (_SIZE - 2)))


def allocate(
    mesh: str,
    current: Mapping[str, str],
    services: Collection[str],
    *,
    release: bool = True,
    reserved: Collection[str] = (),
    kind: str = "",
) -> dict[str, str]:
    """The allocation for ``services`` given the ``current`` one: existing entries kept as
    they are, new services (in name order, so every instance computes the same) at their first
    free hash choice (never one of ``reserved``: the other kind's VIPs); with ``release``,
    entries of services not in ``services`` dropped."""
    result = {s: vip for s, vip in current.items() if not release or s in services}
    taken = set(result.values()) | set(reserved)
    for service in sorted(set(services) - result.keys()):
        attempt = 0
        while (vip := hashed_vip(mesh, service, attempt, kind=kind)) in taken:
            attempt += 1
        taken.add(vip)
        result[service] = vip
    return result


class VipAllocator:
    """Follows the store; keeps every mesh's ``MeshVips`` in line with its services."""

    def __init__(self, store: Store, *, retry_interval: float = 1.0, zone: str = "") -> None:
        self._store = store
        #: The local zone: its own ZoneIngresses list nothing new (cross_zone.is_remote).
        self.zone = zone
        self.retry_interval = retry_interval
        #: mesh → Dataplane name → the services it makes exist.
        self._members: dict[str, dict[str, frozenset[str]]] = {}
        #: mesh → service → how many Dataplanes make it exist.
        self._counts: dict[str, Counter[str]] = {}
        #: mesh → ExternalService name → (its service, its host name when it gets a host VIP).
        self._externals: dict[str, dict[str, tuple[str, str | None]]] = {}
        #: Remote ZoneIngress name → the (mesh, service) pairs it lists.
        self._listed: dict[str, frozenset[tuple[str, str]]] = {}
        #: mesh → service → how many remote ZoneIngresses list it.
        self._remote: dict[str, Counter[str]] = {}
        #: mesh → its MeshVips as the watch last delivered it (or as this instance wrote it).
        self._stored: dict[str, StoredResource] = {}
        self._dirty: set[str] = set()
        self._wake = anyio.Event()
        self._synced = False
        self._done = False

    def services(self, mesh: str) -> set[str]:
        """The services of Dataplanes, of ExternalServices and of other zones' ingresses
        (Kuma gives all three a VIP)."""
        services = {s for s, n in self._counts.get(mesh, Counter()).items() if n > 0}
        services.update(self._remote.get(mesh, Counter()))
        services.update(service for service, _ in self._externals.get(mesh, {}).values())
        return services

    def hosts(self, mesh: str) -> set[str]:
        """The host names of ExternalServices that get their own VIP."""
        return {h for _, h in self._externals.get(mesh, {}).values() if h is not None}

    def _apply(self, item: WatchItem) -> None:
        if isinstance(item, Synced):
            self._synced = True
            self._dirty.update(
                self._counts.keys()
                | self._externals.keys()
                | self._stored.keys()
                | self._remote.keys()
            )
            return
        resource = item.resource
        if isinstance(resource, Dataplane):
            mesh = resource.mesh
            members = self._members.setdefault(mesh, {})
            counts = self._counts.setdefault(mesh, Counter())
            old = members.pop(resource.name, frozenset())
            new = (
                frozenset()
                if item.operation is Operation.DELETE
                else frozenset(services_of(resource))
            )
            if new:
                members[resource.name] = new
            if old == new:
                return
            counts.subtract(old)
            counts.update(new)
            for service in old - new:
                if counts[service] <= 0:
                    del counts[service]
        elif isinstance(resource, ExternalService):
            mesh = resource.mesh
            externals = self._externals.setdefault(mesh, {})
            old_entry = externals.pop(resource.name, None)
            if item.operation is not Operation.DELETE:
                externals[resource.name] = _external_entry(resource)
            if old_entry == externals.get(resource.name):
                return
        elif isinstance(resource, ZoneIngress):
            self._dirty.update(self._relist(item))
            return
        elif isinstance(resource, MeshVips):
            mesh = resource.name
            if item.operation is Operation.DELETE:
                self._stored.pop(mesh, None)
            else:
                self._stored[mesh] = StoredResource(resource, item.meta)
        else:
            return
        self._dirty.add(mesh)

    def _relist(self, item: ResourceEvent) -> set[str]:
        """Follow a ZoneIngress: only the services it lists (before or after) are counted
        again; the meshes where one of them appeared or vanished are returned (an instances
        change, the common update, returns none)."""
        assert isinstance(item.resource, ZoneIngress)
        name = item.resource.name
        old = self._listed.pop(name, frozenset())
        new = (
            frozenset()
            if item.operation is Operation.DELETE
            else listed_services(item.resource, self.zone)
        )
        if new:
            self._listed[name] = new
        changed: set[str] = set()
        for mesh, service in old - new:
            counts = self._remote[mesh]
            counts[service] -= 1
            if counts[service] <= 0:
                del counts[service]
                changed.add(mesh)
        for mesh, service in new - old:
            counts = self._remote.setdefault(mesh, Counter())
            if not counts[service]:
                changed.add(mesh)
            counts[service] += 1
        return changed

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow the store until cancelled; ``task_status.started()`` once the store's
        snapshot is read and every mesh allocated (or the attempt failed and was logged)."""
        started = False
        async with self._store.watch() as events, anyio.create_task_group() as tg:
            tg.start_soon(self._read, events)
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                if self._done:
                    tg.cancel_scope.cancel()
                    return
                if not self._synced:
                    continue
                again: set[str] = set()
                while self._dirty:
                    # Events arriving meanwhile dirty meshes again: the loop takes them next.
                    todo = sorted(self._dirty)
                    self._dirty.clear()
                    for mesh in todo:
                        if not await self.reconcile(mesh):
                            again.add(mesh)
                if not started:
                    started = True
                    task_status.started()
                if again:
                    # The store failed: try again later (new events may come first).
                    tg.start_soon(self._retry_later, again)

    async def _read(self, events: AsyncIterator[WatchItem]) -> None:
        async for item in events:
            self._apply(item)
            self._wake.set()
        self._done = True
        self._wake.set()

    async def _retry_later(self, meshes: set[str]) -> None:
        await anyio.sleep(self.retry_interval)
        self._dirty.update(meshes)
        self._wake.set()

    async def reconcile(self, mesh: str) -> bool:
        """Bring ``mesh``'s stored allocation in line with its services; False when the store
        failed (logged)."""
        stored = self._stored.get(mesh)
        release = True
        for _ in range(MAX_ATTEMPTS):
            current, current_hosts = _allocation_of(stored)
            services, hosts = self.services(mesh), self.hosts(mesh)
            wanted = allocate(
                mesh, current, services, release=release, reserved=current_hosts.values()
            )
            wanted_hosts = allocate(
                mesh, current_hosts, hosts, release=release, reserved=wanted.values(), kind="host"
            )
            if wanted == current and wanted_hosts == current_hosts:
                return True
            try:
                try:
                    stored = await self._write(mesh, stored, wanted, wanted_hosts)
                except (ConflictError, NotFoundError):
                    # Another instance wrote first: start again from what is stored now.
                    stored = await self._read_stored(mesh)
                    release = False
                    continue
            except (StoreError, ValidationError) as error:
                # Unavailable store (retried later by ``run``); a refusal cannot happen with
                # what ``allocate`` computes, but must not take the control plane down.
                log.warning("VIP allocation failed", extra=fields(mesh=mesh, error=str(error)))
                return False
            if release:
                # What was written holds only services of this instance's view, so a release
                # computed on it later is safe. After a re-read it may hold services this
                # instance has not seen yet: the watch delivers that version in its turn.
                if stored is None:
                    self._stored.pop(mesh, None)
                else:
                    self._stored[mesh] = stored
            log.info(
                "VIPs allocated",
                extra=fields(
                    mesh=mesh,
                    services=len(wanted),
                    hosts=len(wanted_hosts),
                    added=len(wanted.keys() - current),
                ),
            )
            return True
        # Each lost race is another instance's write, which the watch delivers: this mesh
        # is dirty again then.
        return True

    async def _read_stored(self, mesh: str) -> StoredResource | None:
        try:
            return await self._store.get(ResourceKey(MeshVips.TYPE, "", mesh))
        except NotFoundError:
            return None

    async def _write(
        self, mesh: str, stored: StoredResource | None, vips: dict[str, str], hosts: dict[str, str]
    ) -> StoredResource | None:
        if stored is None:
            return await self._store.create(MeshVips(name=mesh, vips=vips, hosts=hosts))
        if not vips and not hosts:
            await self._store.delete(stored.key, version=stored.meta.version)
            return None
        resource = MeshVips(name=mesh, labels=stored.resource.labels, vips=vips, hosts=hosts)
        return await self._store.update(resource, version=stored.meta.version)


def _allocation_of(stored: StoredResource | None) -> tuple[Mapping[str, str], Mapping[str, str]]:
    """The stored (service VIPs, host VIPs)."""
    if stored is None:
        return {}, {}
    assert isinstance(stored.resource, MeshVips)
    return stored.resource.vips, stored.resource.hosts


def _external_entry(resource: ExternalService) -> tuple[str, str | None]:
    """(service, host) of an ExternalService: the host gets a VIP of its own unless
    ``disableHostDNSEntry``, or when it is an IP (Kuma's host entry is then the IP itself)."""
    networking = resource.networking
    if networking is None or networking.disable_host_dns_entry:
        return resource.service, None
    host, _ = split_host_port(networking.address) or ("", "")
    return resource.service, host if is_dns_name(host) else None
