"""Dataplanes that sidecars bring along: registered when their ADS stream opens, deregistered
some time after the last one closes (Kuma's ``pkg/xds/server/callbacks/dataplane_lifecycle.go``).

kuma-dp puts the Dataplane it was started with into Envoy's node metadata
(``dataplane.resource``, see :mod:`kuma.bootstrap.generator`). When a stream opens with it, the
:class:`Registrar` checks it (the bootstrap's rules; it must be the Dataplane the node id names)
and writes it to the store; an invalid one ends the stream with INVALID_ARGUMENT and nothing is
written. When the last stream of that proxy on this instance ends, the Dataplane is deleted
after ``xdsServer.dataplaneDeregistrationDelay`` unless the proxy came back.

Telling registrations from Dataplanes that people defined (a file in the directory store, a
REST ``PUT``): every registration writes the Dataplane with the label
``kuma.io/dp-registration: <instance>.<n>``, unique per registration (``<instance>`` is random
per kuma-cp process). A stored Dataplane without that label belongs to whoever wrote it: a
proxy that brings one with the same name is served the stored one (with a warning if they
differ), and it is never overwritten or deleted here. The label is in the stored resource, so
every kuma-cp sharing the store, and this one after a restart, sees it.

One name, one live sidecar: while a proxy's stream is open here (or, with
``connected_elsewhere``, to another live instance on a shared store), a newcomer that brings
another Dataplane under the same name is refused (ALREADY_EXISTS, naming the connected one)
and nothing is written, so the live Envoy keeps its listeners. The same Dataplane again is
accepted: that is the live proxy reconnecting before its old stream is seen closed. Envoy
retries a refused stream, so the newcomer registers once the live one has gone.

Deleting only what is still ours: the registrar remembers the store version of its own last
write and deletes with that version (compare-and-swap). A proxy that reconnected meanwhile, to
this instance or to another one on the same etcd, was registered again, which wrote a new
label value and so a new version: the delete then fails with a conflict and the Dataplane
stays. The same holds for a registered Dataplane that someone edited since. A reconnect to this
instance also cancels the pending deletion outright.

Zone proxies (``proxyType: ingress|egress``, node id ``.<name>``) register their ZoneIngress or
ZoneEgress by the same rules; a zone control plane sets its ``zone`` (refusing another, as
``kuma.io/zone``), and an ingress's update keeps the stored ``availableServices`` (the zone's
writer keeps that field, kuma/cp/ingress_services.py: a reconnect must not blank them).

A kuma-cp that stops deletes nothing (its pending deletions are cancelled with it): its proxies
reconnect to another instance, or to this one when it is back, and register again.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from kuma.bootstrap import decode_proxy_dataplane
from kuma.bootstrap.zone_proxy import ZONE_PROXY_KINDS, decode_zone_proxy
from kuma.multizone import stamp_proxy_zone, stamp_zone
from kuma.resources import Dataplane, ResourceKey, ValidationError, ZoneEgress, ZoneIngress
from kuma.store import (
    ConflictError,
    NotFoundError,
    Store,
    StoreError,
    StoreUnavailableError,
)
from kuma.xds.server import InvalidRequest, parse_proxy_id

from .logs import fields

log = logging.getLogger("kuma.cp.registration")

#: The label that marks a Dataplane as registered by its sidecar (and so deletable by us).
REGISTRATION_LABEL = "kuma.io/dp-registration"
#: The node metadata key that carries the Dataplane (Kuma's name).
RESOURCE_METADATA = "dataplane.resource"
#: The node metadata key that carries the proxy type (Kuma's name).
PROXY_TYPE_METADATA = "dataplane.proxyType"

#: What a proxy registers: a sidecar's Dataplane or a zone proxy's ZoneIngress.
Registered = Dataplane | ZoneIngress | ZoneEgress
#: Registrations of different proxies share a lock only when their keys hash alike.
_LOCK_STRIPES = 64
#: Attempts when another writer keeps changing the Dataplane between our read and our write.
_WRITE_ATTEMPTS = 3


#: ``(mesh, name)`` -> the id of another live instance the proxy is connected to, or None.
ConnectedElsewhere = Callable[[str, str], Awaitable[str | None]]


def is_registered(dataplane: Registered) -> bool:
    return REGISTRATION_LABEL in dataplane.labels


def _unlabelled(proxy: Registered) -> Registered:
    """What the proxy itself brings: without our label (and a ZoneIngress without the
    ``availableServices`` the zone writes into it)."""
    labels = {k: v for k, v in proxy.labels.items() if k != REGISTRATION_LABEL}
    if isinstance(proxy, ZoneIngress):
        return msgspec.structs.replace(proxy, labels=labels, available_services=())
    return msgspec.structs.replace(proxy, labels=labels)


def _address(proxy: Registered) -> str:
    return proxy.networking.address if proxy.networking is not None else "none"


def _metadata_string(node: Any, key: str) -> str | None:
    """``node.metadata[key]``: None when absent, the string when it is one."""
    value = node.metadata.fields.get(key)
    if value is None:
        return None
    if value.WhichOneof("kind") != "string_value":
        raise InvalidRequest(f"node.metadata[{key!r}] must be a string")
    text: str = value.string_value
    return text


def _decode(text: str, proxy_type: str | None, zone: str) -> Registered:
    """The resource a proxy brings, checked and stamped with this zone."""
    if proxy_type in ZONE_PROXY_KINDS:
        proxy = decode_zone_proxy(text, proxy_type, RESOURCE_METADATA)
        if isinstance(proxy, ZoneEgress):
            return stamp_proxy_zone(proxy, zone)
        return stamp_proxy_zone(proxy, zone)
    return stamp_zone(decode_proxy_dataplane(text, field=RESOURCE_METADATA), zone)


def _keys_of_node(node_id: str) -> tuple[ResourceKey, ...]:
    """What the proxy may have registered: a Dataplane, or a zone proxy's resource."""
    mesh, name = parse_proxy_id(node_id)
    if mesh:
        return (ResourceKey(Dataplane.TYPE, mesh, name),)
    return (ResourceKey(ZoneIngress.TYPE, "", name), ResourceKey(ZoneEgress.TYPE, "", name))


class Registrar:
    """The :class:`~kuma.xds.server.StreamLifecycle` of kuma-cp's ADS server."""

    def __init__(
        self,
        store: Store,
        delay: float,
        *,
        instance: str | None = None,
        connected_elsewhere: ConnectedElsewhere | None = None,
        zone: str = "",
    ) -> None:
        """``zone``: this zone control plane's name, stamped as ``kuma.io/zone`` on every
        Dataplane it registers (one that names another zone is refused); empty: none."""
        self._store = store
        self._zone = zone
        self._connected_elsewhere = connected_elsewhere
        self._delay = delay
        self.instance = instance or secrets.token_hex(4)
        self._serial = itertools.count(1)
        #: Open streams of each registered proxy on this instance.
        self._streams: dict[ResourceKey, set[int]] = {}
        #: The store version of our last write of each Dataplane not yet deregistered.
        self._written: dict[ResourceKey, str] = {}
        #: Pending deregistrations.
        self._timers: dict[ResourceKey, anyio.CancelScope] = {}
        self._locks = [anyio.Lock() for _ in range(_LOCK_STRIPES)]
        self._tg: TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the deregistration timers until cancelled (then they are dropped, see above)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    def _lock(self, key: ResourceKey) -> anyio.Lock:
        return self._locks[hash((key.mesh, key.name)) % _LOCK_STRIPES]

    # --- StreamLifecycle ---------------------------------------------------------------------

    async def stream_opening(self, stream_id: int, node_id: str, node: Any) -> None:
        text = _metadata_string(node, RESOURCE_METADATA)
        if text is None:
            return  # the proxy uses a Dataplane defined in the store: nothing to register
        proxy_type = _metadata_string(node, PROXY_TYPE_METADATA)
        try:
            dataplane = _decode(text, proxy_type, self._zone)
        except ValidationError as exc:
            kind = (
                ZONE_PROXY_KINDS[proxy_type].TYPE if proxy_type in ZONE_PROXY_KINDS else "Dataplane"
            )
            raise InvalidRequest(f"the {kind} in node metadata is not valid: {exc}") from None
        own_id = f"{dataplane.mesh_name}.{dataplane.name}"
        if own_id != node_id:
            raise InvalidRequest(
                f"node.id {node_id!r} does not name the {dataplane.TYPE} in node metadata "
                f"({own_id})"
            )
        key = ResourceKey.of(dataplane)
        async with self._lock(key):
            try:
                registered = await self._register(key, dataplane)
            except ValidationError as exc:
                raise InvalidRequest(f"the Dataplane cannot be stored: {exc}") from None
            except StoreUnavailableError as exc:
                raise GRPCError(Status.UNAVAILABLE, f"cannot register {key}: {exc}") from exc
            except StoreError as exc:
                raise GRPCError(Status.INTERNAL, f"cannot register {key}: {exc}") from exc
            if registered:
                self._cancel_timer(key)
                self._streams.setdefault(key, set()).add(stream_id)

    def stream_closed(self, stream_id: int, node_id: str) -> None:
        keys = [k for k in _keys_of_node(node_id) if stream_id in self._streams.get(k, ())]
        key = keys[0] if keys else _keys_of_node(node_id)[0]
        mesh, name = key.mesh, key.name
        streams = self._streams.get(key)
        if streams is None or stream_id not in streams:
            return  # not a registration (or one that failed)
        streams.discard(stream_id)
        if streams:
            return
        del self._streams[key]
        if self._tg is None:
            return  # shutting down: keep it (see the module doc)
        scope = anyio.CancelScope()
        self._timers[key] = scope
        log.info(
            "proxy disconnected, deregistering after the delay",
            extra=fields(mesh=mesh, name=name, delay=self._delay),
        )
        self._tg.start_soon(self._deregister_later, key, scope)

    # --- the store ---------------------------------------------------------------------------

    async def _register(self, key: ResourceKey, dataplane: Registered) -> bool:
        """Write the Dataplane with a fresh registration label; False when a Dataplane that
        people defined holds the name (it is left alone). The lock of ``key`` is held."""
        if isinstance(dataplane, Dataplane):
            await self._check_mesh(dataplane.mesh)
        for _ in range(_WRITE_ATTEMPTS):
            try:
                stored = await self._store.get(key)
            except NotFoundError:
                stored = None
            previous: Registered | None = None
            if stored is not None:
                resource = stored.resource
                assert isinstance(resource, Dataplane | ZoneIngress | ZoneEgress)
                previous = resource
                if not is_registered(previous):
                    if previous != dataplane:
                        log.warning(
                            "a Dataplane defined in the store holds this name; serving it and "
                            "ignoring the one the proxy brought",
                            extra=fields(mesh=key.mesh, name=key.name),
                        )
                    return False
                await self._refuse_takeover(key, previous, dataplane)
            label = f"{self.instance}.{next(self._serial)}"
            marked = msgspec.structs.replace(
                dataplane, labels={**dataplane.labels, REGISTRATION_LABEL: label}
            )
            if isinstance(marked, ZoneIngress) and isinstance(previous, ZoneIngress):
                marked = msgspec.structs.replace(
                    marked, available_services=previous.available_services
                )
            try:
                if stored is None:
                    written = await self._store.create(marked)
                else:
                    written = await self._store.update(marked, version=stored.meta.version)
            except ConflictError:
                continue  # someone wrote it between our read and our write: read again
            self._written[key] = written.meta.version
            changed = previous is None or _unlabelled(previous) != _unlabelled(dataplane)
            log.info(
                "proxy registered",
                extra=fields(
                    mesh=key.mesh,
                    name=key.name,
                    operation="create" if previous is None else "update",
                    changed=changed,
                ),
            )
            return True
        raise GRPCError(Status.UNAVAILABLE, f"{key} kept changing while registering; retry")

    async def _refuse_takeover(
        self, key: ResourceKey, live: Registered, newcomer: Registered
    ) -> None:
        """A registered Dataplane whose sidecar is connected (here, or to another live instance
        on a shared store) belongs to that sidecar: a newcomer bringing another Dataplane under
        its name (a second kuma-dp started with the same name, or any stream naming it) would
        replace the live proxy's listeners. The same Dataplane again is the live proxy
        reconnecting before its old stream is seen closed."""
        if _unlabelled(live) == _unlabelled(newcomer):
            return
        streams = self._streams.get(key)
        if streams:
            holder = f"stream {min(streams)} on kuma-cp {self.instance}"
        elif self._connected_elsewhere is not None:
            elsewhere = await self._connected_elsewhere(key.mesh, key.name)
            if elsewhere is None:
                return
            holder = f"connected to kuma-cp {elsewhere}"
        else:
            return
        live_address, new_address = _address(live), _address(newcomer)
        message = (
            f"Dataplane {key.name!r} of mesh {key.mesh!r} is registered by a connected sidecar "
            f"(address {live_address}, {holder}); refusing this sidecar (address "
            f"{new_address}), which brings another Dataplane under that name: "
            "give it another name, or stop the connected one first"
        )
        log.warning(
            "refused a second sidecar under a connected sidecar's name",
            extra=fields(
                mesh=key.mesh,
                name=key.name,
                connected=live_address,
                refused=new_address,
            ),
        )
        raise GRPCError(Status.ALREADY_EXISTS, message)

    async def _check_mesh(self, mesh: str) -> None:
        try:
            await self._store.get(ResourceKey("Mesh", "", mesh))
        except NotFoundError:
            raise InvalidRequest(f'mesh "{mesh}" does not exist') from None

    def _cancel_timer(self, key: ResourceKey) -> None:
        scope = self._timers.pop(key, None)
        if scope is not None:
            scope.cancel()

    async def _deregister_later(self, key: ResourceKey, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep(self._delay)
            async with self._lock(key):
                if self._timers.get(key) is scope:
                    del self._timers[key]
                if key in self._streams:
                    return  # back on this instance
                version = self._written.pop(key, None)
                if version is not None:
                    await self._delete(key, version)

    async def _delete(self, key: ResourceKey, version: str) -> None:
        where = fields(mesh=key.mesh, name=key.name)
        try:
            await self._store.delete(key, version=version)
        except NotFoundError:
            log.info("registered Dataplane already gone", extra=where)
        except ConflictError:
            # Registered again (here or on another instance) or edited since: not ours to drop.
            log.info("registered Dataplane changed since, keeping it", extra=where)
        except StoreError as exc:
            log.error("cannot deregister: %s", exc, extra=where)
        else:
            log.info("proxy deregistered", extra=where)
