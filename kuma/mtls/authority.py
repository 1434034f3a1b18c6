"""Keeps every mesh's CA: creates builtin CAs once, loads provided ones, follows changes.

:class:`CaKeeper` follows the store (its own watch, like the VIP allocator). For each Mesh it
ensures every ``builtin`` backend has its CA, stored as Kuma does in the mesh's Secrets
``<mesh>.ca-builtin-cert-<backend>`` and ``<mesh>.ca-builtin-key-<backend>``, and reports the
enabled backend's CA (or None, mTLS off) through ``on_ca``.

Created once, even with several kuma-cp on one store: the certificate Secret is written with
``create`` (atomic; a second writer gets AlreadyExistsError) and only the instance whose
certificate was stored writes the key. An instance that loses the race writes nothing and
waits for the winner's Secrets to arrive through its watch. A key that does not match its
certificate is reported and not used.

A ``provided`` backend's certificate and key come from its DataSources (a Secret of the mesh,
inline bytes or a file) and must pass Kuma's CA checks; a problem is logged with the mesh and
backend (never key material) and the mesh gets no CA until it is fixed.

On a federated zone (``create=False``) the builtin CAs are global's: its Secrets arrive over
KDS (kuma/kds/secrets.py) and this keeper only loads them; it never creates one (Kuma creates
CAs in the mesh manager, which a zone's KDS sync bypasses) and never removes one (the KDS sink
removes what global removes). Until global's Secrets arrive the mesh has no CA ("waiting for
the mesh CA"), as a zone of Kuma's waits.

Builtin CA Secrets nobody can use (a deleted mesh's; a certificate whose creator died before
writing its key) are removed by :class:`~kuma.mtls.ca_cleanup.CaSecretCleaner`, after which
a mesh that still wants a CA gets a fresh pair the usual way.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import msgspec

from kuma.resources import Dataplane, Mesh, Secret, ZoneEgress
from kuma.resources.model import ResourceKey
from kuma.resources.mtls import (
    BUILTIN,
    PERMISSIVE,
    PROVIDED,
    BackendConfError,
    CaBackend,
    DataSource,
    builtin_conf,
    builtin_secret_names,
    mesh_mtls,
    provided_conf,
)
from kuma.store import AlreadyExistsError, Operation, ResourceEvent, Store, StoreError, Synced

from .ca import CaError, CertificateAuthority, generate_root
from .ca_cleanup import GRACE, CaSecretCleaner

log = logging.getLogger("kuma.mtls.ca")


class MeshCa(msgspec.Struct, frozen=True):
    """The CA a mesh's identities are issued by. ``backend`` is the enabled backend's
    definition apart from ``mode`` (which changes no certificate): identities issued under a
    different one are re-issued."""

    mesh: str
    backend: CaBackend
    authority: CertificateAuthority

    @property
    def roots_pem(self) -> bytes:
        return self.authority.cert_pem


def backend_identity(backend: CaBackend) -> CaBackend:
    """What about a backend makes certificates differ (everything but ``mode``)."""
    return msgspec.structs.replace(backend, mode="STRICT")


class CaKeeper:
    def __init__(
        self,
        store: Store,
        on_ca: Callable[[str, MeshCa | None], None],
        *,
        on_dataplane: Callable[[ResourceEvent], None] | None = None,
        cleanup_grace: float = GRACE,
        create: bool = True,
    ) -> None:
        self._store = store
        #: Whether builtin CAs are made (and their unusable Secrets removed) here.
        self._create = create
        self._on_ca = on_ca
        #: Dataplane events are handed on (the mTLS service keeps each proxy's tags).
        self._on_dataplane = on_dataplane
        self._meshes: dict[str, Mesh] = {}
        #: (mesh, Secret name) → value, for the Secrets this keeper may read.
        self._secrets: dict[tuple[str, str], bytes] = {}
        #: mesh → what was last reported (to report only changes).
        self._reported: dict[str, MeshCa | None] = {}
        #: (mesh, backend) builtin CAs this instance is creating right now.
        self._creating: set[tuple[str, str]] = set()
        self._dirty: set[str] = set()
        self._wake = anyio.Event()
        self._cleaner = CaSecretCleaner(store, grace=cleanup_grace)
        #: Unusable CA Secrets are removed only once the watch holds the whole store.
        self._synced = False

    def permissive(self, mesh: str) -> bool:
        """Whether the mesh's enabled backend is in PERMISSIVE mode."""
        mtls = mesh_mtls(self._meshes.get(mesh))
        backend = mtls.enabled if mtls is not None else None
        return backend is not None and backend.mode == PERMISSIVE

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._reconcile_loop, tg)
            async with self._store.watch() as events:
                async for item in events:
                    if isinstance(item, Synced):
                        if not self._synced:
                            self._synced = True
                            for mesh in self._cleaner.meshes():
                                self._mark(mesh)
                        continue
                    resource = item.resource
                    if isinstance(resource, Mesh):
                        if item.operation is Operation.DELETE:
                            self._meshes.pop(resource.name, None)
                        else:
                            self._meshes[resource.name] = resource
                        self._mark(resource.name)
                    elif isinstance(resource, Dataplane | ZoneEgress):
                        # The proxies' identities (a zone egress holds one per mesh).
                        if self._on_dataplane is not None:
                            self._on_dataplane(item)
                    elif isinstance(resource, Secret):
                        self._cleaner.observe(item)
                        key = (resource.mesh, resource.name)
                        if item.operation is Operation.DELETE:
                            self._secrets.pop(key, None)
                        else:
                            self._secrets[key] = resource.value
                        self._mark(resource.mesh)
            tg.cancel_scope.cancel()

    def _mark(self, mesh: str) -> None:
        self._dirty.add(mesh)
        self._wake.set()

    async def _reconcile_loop(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._dirty:
                mesh = self._dirty.pop()
                await self._reconcile(mesh, tg)

    async def _mark_later(self, mesh: str, delay: float) -> None:
        await anyio.sleep(delay)
        self._mark(mesh)

    async def _reconcile(self, name: str, tg: anyio.abc.TaskGroup) -> None:
        mesh = self._meshes.get(name)
        if self._synced and self._create:
            creating = {backend for m, backend in self._creating if m == name}
            retry = await self._cleaner.clean(name, mesh, creating)
            if retry is not None:
                tg.start_soon(self._mark_later, name, retry)
        mtls = mesh_mtls(mesh)
        current: MeshCa | None = None
        if mesh is not None and mtls is not None:
            for backend in mtls.backends if self._create else ():
                if backend.type == BUILTIN:
                    await self._ensure_builtin(mesh.name, backend)
            enabled = mtls.enabled
            if enabled is not None:
                current = await self._load(mesh.name, enabled)
        previous = self._reported.get(name)
        if current != previous or name not in self._reported:
            self._reported[name] = current
            if current is None and previous is None:
                return
            self._on_ca(name, current)

    # --- builtin --------------------------------------------------------------------------

    async def _ensure_builtin(self, mesh: str, backend: CaBackend) -> None:
        cert_name, key_name = builtin_secret_names(mesh, backend.name)
        if (mesh, cert_name) in self._secrets or (mesh, backend.name) in self._creating:
            return
        try:
            conf = builtin_conf(backend)
        except BackendConfError as error:
            log.error(
                "cannot create the mesh CA",
                extra={"fields": {"mesh": mesh, "backend": backend.name, "reason": str(error)}},
            )
            return
        self._creating.add((mesh, backend.name))
        try:
            # An RSA key of a few thousand bits takes a while: off the event loop.
            root = await anyio.to_thread.run_sync(generate_root, mesh, conf)
            cert = Secret(mesh=mesh, name=cert_name, data=_b64(root.cert_pem))
            try:
                await self._store.create(cert)
            except AlreadyExistsError:
                return  # another instance won: its Secrets arrive through the watch
            key = Secret(mesh=mesh, name=key_name, data=_b64(root.key_pem))
            try:
                await self._store.create(key)
            except AlreadyExistsError:
                # Left by a creator whose certificate was removed (it stalled past the
                # cleanup grace): this instance's certificate won the create, so its key does.
                stale = await self._store.get(ResourceKey(Secret.TYPE, mesh, key_name))
                await self._store.update(key, version=stale.meta.version)
                log.warning(
                    "replaced a mesh CA key Secret that belonged to no certificate",
                    extra={"fields": {"mesh": mesh, "secret": key_name}},
                )
            # The watch will deliver both; remember them now so issuing can start at once.
            self._secrets[(mesh, cert_name)] = root.cert_pem
            self._secrets[(mesh, key_name)] = root.key_pem
            log.info("CA created", extra={"fields": {"mesh": mesh, "backend": backend.name}})
        except StoreError as error:
            log.error(
                "cannot store the mesh CA; retrying on the next change",
                extra={"fields": {"mesh": mesh, "backend": backend.name, "reason": str(error)}},
            )
        finally:
            self._creating.discard((mesh, backend.name))

    # --- loading --------------------------------------------------------------------------

    async def _load(self, mesh: str, backend: CaBackend) -> MeshCa | None:
        try:
            cert_pem, key_pem = await self._material(mesh, backend)
        except _Missing as missing:
            log.info(
                "waiting for the mesh CA",
                extra={"fields": {"mesh": mesh, "backend": backend.name, "missing": str(missing)}},
            )
            return None
        except (BackendConfError, OSError) as error:
            log.error(
                "cannot load the mesh CA",
                extra={"fields": {"mesh": mesh, "backend": backend.name, "reason": str(error)}},
            )
            return None
        previous = self._reported.get(mesh)
        if (
            previous is not None
            and previous.authority.cert_pem == cert_pem
            and previous.backend == backend_identity(backend)
        ):
            return previous
        try:
            authority = CertificateAuthority.from_pem(cert_pem, key_pem)
        except CaError as error:
            log.error(
                "the mesh CA is not usable",
                extra={"fields": {"mesh": mesh, "backend": backend.name, "reason": str(error)}},
            )
            return None
        return MeshCa(mesh, backend_identity(backend), authority)

    async def _material(self, mesh: str, backend: CaBackend) -> tuple[bytes, bytes]:
        if backend.type == BUILTIN:
            cert_name, key_name = builtin_secret_names(mesh, backend.name)
            return self._secret(mesh, cert_name), self._secret(mesh, key_name)
        if backend.type == PROVIDED:
            cert_source, key_source = provided_conf(backend)
            return await self._read(mesh, cert_source), await self._read(mesh, key_source)
        raise BackendConfError("type", f"unknown CA type {backend.type!r}")

    def _secret(self, mesh: str, name: str) -> bytes:
        value = self._secrets.get((mesh, name))
        if value is None:
            raise _Missing(str(ResourceKey("Secret", mesh, name)))
        return value

    async def _read(self, mesh: str, source: DataSource) -> bytes:
        if source.secret is not None:
            return self._secret(mesh, source.secret)
        if source.inline is not None:
            return source.inline
        assert source.file is not None
        return await anyio.Path(Path(source.file)).read_bytes()


class _Missing(Exception):
    """A Secret the CA needs is not (yet) in the store."""


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()
