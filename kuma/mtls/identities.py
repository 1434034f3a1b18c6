"""Workload identities of the connected proxies: issued on demand, rotated on schedule, kept
in memory only (never persisted: a restart issues new ones, as Kuma does).

Inputs:

* :meth:`Identities.set_ca` (from :class:`~kuma.mtls.authority.CaKeeper`): a mesh's CA
  appeared, changed or went away (mTLS off);
* :meth:`Identities.set_need` (from the engine, when it assembles a proxy): which mesh and
  tags a proxy's certificate must carry, or None when it references no Secret.

A proxy whose certificate is missing, was issued under another CA or backend, or for other
tags goes into a pending queue; :meth:`Identities.run` issues from it in batches bounded by a
time budget and yields to the event loop between batches, so issuing 10,000 identities never
stalls the streams. Each issued certificate is scheduled for rotation in one
:class:`~kuma.mtls.schedule.RotationSchedule` at a jittered 70-80 % of its lifetime.

Every change is reported to ``on_change`` with the node ids concerned (the SDS source marks
their streams).
"""

from __future__ import annotations

import logging
import random
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Mapping

import anyio
import anyio.lowlevel
import msgspec
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from kuma.xds.generate import types
from kuma.xds.generate.tls import identity_secret
from kuma.xds.snapshot import VersionedResource, versioned

from .authority import MeshCa
from .issuer import WorkloadKeyType, identity_sans, issue
from .schedule import RotationSchedule, rotation_time

log = logging.getLogger("kuma.mtls.identities")

TagSet = tuple[tuple[str, tuple[str, ...]], ...]


class Need(msgspec.Struct, frozen=True, weakref=True):
    """What a proxy's certificate must say: its mesh and its tags (Kuma's MultiValueTagSet,
    sorted)."""

    mesh: str
    tags: TagSet

    @classmethod
    def of(cls, mesh: str, tags: Mapping[str, Iterable[str]]) -> Need:
        """The shared Need for these tags: the instances of a service usually carry the same
        tags, and every Dataplane's Need is kept (one object per tag set, not per proxy)."""
        need = cls(mesh, tuple((k, tuple(sorted(set(tags[k])))) for k in sorted(tags)))
        key = (need.mesh, need.tags)
        shared = _NEEDS.get(key)
        if shared is not None:
            return shared
        _NEEDS[key] = need
        return need


#: (mesh, tags) → the live Need with them (entries go with the last Need holding them; a key
#: holds the Need's own strings and tuples, so it costs no copy).
_NEEDS: weakref.WeakValueDictionary[tuple[str, TagSet], Need] = weakref.WeakValueDictionary()


class Issued(msgspec.Struct, frozen=True):
    """A proxy's current certificate and how it came to be.

    The certificate and key are kept only as the serialized identity Secret SDS serves (one
    copy, ~1 KB): no PEM copies, no key or certificate objects (10,000 proxies hold 10,000 of
    these)."""

    #: ``identity_cert:secret:<mesh>``: the certificate chain and private key (secret: never
    #: log or show its body).
    secret: VersionedResource
    #: The certificate's notAfter (Unix seconds).
    not_after: float
    need: Need
    ca: MeshCa
    #: Wall-clock time of issue, and how many certificates this proxy had before this one
    #: since it connected (rotations, tag or CA changes).
    issued_at: float
    generation: int
    rotate_at: float
    #: Since when (``time.monotonic()``) the proxy holds certificates of this CA: rotations
    #: keep it, a new CA restarts it (PERMISSIVE TLS readiness, ``MtlsService``).
    held_since: float

    @property
    def backend(self) -> str:
        return self.ca.backend.name

    @property
    def sans(self) -> tuple[str, ...]:
        """The certificate's URI SANs (derived from the need, as they were issued)."""
        return identity_sans(self.need.mesh, dict(self.need.tags))

    @property
    def cert_pem(self) -> bytes:
        """The certificate (PEM), read back from the Secret (tests, diagnostics)."""
        secret = secret_pb2.Secret.FromString(self.secret.body)
        pem: bytes = secret.tls_certificate.certificate_chain.inline_bytes
        return pem

    def __repr__(self) -> str:  # never print the key
        return f"Issued(sans={self.sans!r}, not_after={self.not_after!r})"


class Identities:
    def __init__(
        self,
        *,
        on_change: Callable[[Iterable[str]], None] | None = None,
        clock: Callable[[], float] = time.time,
        budget: float = 0.02,
        key_type: WorkloadKeyType = "ECDSA",
        rng: random.Random | None = None,
    ) -> None:
        self.on_change = on_change
        self._clock = clock
        #: Seconds of issuing per batch before yielding to the event loop.
        self._budget = budget
        self._key_type = key_type
        self._rng = rng or random.Random()
        self._cas: dict[str, MeshCa] = {}
        self._needs: dict[str, Need] = {}
        #: mesh → node ids with a need in that mesh (a CA change re-issues exactly these).
        self._by_mesh: dict[str, set[str]] = {}
        self._issued: dict[str, Issued] = {}
        #: node ids waiting for a certificate, in arrival order → whether a current one must
        #: be replaced anyway (rotation).
        self._pending: dict[str, bool] = {}
        self._schedule = RotationSchedule()
        self._wake = anyio.Event()
        self.issued_total = 0

    # --- queries ----------------------------------------------------------------------------

    def ca(self, mesh: str) -> MeshCa | None:
        return self._cas.get(mesh)

    def meshes(self) -> list[str]:
        """The meshes with a CA (mTLS on), sorted."""
        return sorted(self._cas)

    def issued(self, node_id: str) -> Issued | None:
        """The certificate to serve the proxy: its latest one for its mesh, kept while a
        replacement is being issued (rotation, new tags, new CA) so the proxy never goes
        without one."""
        issued = self._issued.get(node_id)
        need = self._needs.get(node_id)
        if issued is None or need is None or issued.need.mesh != need.mesh:
            return None
        return issued

    def is_current(self, node_id: str) -> bool:
        """Whether the proxy's certificate matches its tags and its mesh's CA and backend."""
        issued = self._issued.get(node_id)
        need = self._needs.get(node_id)
        if issued is None or need is None or issued.need != need:
            return False
        return self._cas.get(need.mesh) is issued.ca

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def scheduled(self) -> int:
        return len(self._schedule)

    # --- inputs -----------------------------------------------------------------------------

    def set_ca(self, mesh: str, ca: MeshCa | None) -> None:
        if ca is None:
            if self._cas.pop(mesh, None) is None:
                return
            nodes = self._by_mesh.get(mesh, set())
            for node_id in nodes:
                self._drop_certificate(node_id)
            self._notify(nodes)
            return
        if self._cas.get(mesh) is ca:
            return
        self._cas[mesh] = ca
        nodes = self._by_mesh.get(mesh, set())
        self._enqueue(nodes)
        # Until re-issued, the proxies keep their old certificate but get the new roots.
        self._notify(nodes)

    def set_need(self, node_id: str, need: Need | None) -> None:
        """The proxy needs a certificate for ``need`` (None: no certificate at all)."""
        previous = self._needs.get(node_id)
        if previous == need:
            return
        if previous is not None:
            members = self._by_mesh.get(previous.mesh)
            if members is not None:
                members.discard(node_id)
                if not members:
                    del self._by_mesh[previous.mesh]
        if need is None:
            del self._needs[node_id]
            self._pending.pop(node_id, None)
            had = self._drop_certificate(node_id)
            if had:
                self._notify((node_id,))
            return
        self._needs[node_id] = need
        self._by_mesh.setdefault(need.mesh, set()).add(node_id)
        if not self.is_current(node_id):
            self._enqueue((node_id,))
            if previous is not None and previous.mesh != need.mesh:
                self._notify((node_id,))

    def forget(self, node_id: str) -> None:
        """The proxy is gone: drop everything about it."""
        self.set_need(node_id, None)
        self._issued.pop(node_id, None)

    def _drop_certificate(self, node_id: str) -> bool:
        self._schedule.cancel(node_id)
        return self._issued.pop(node_id, None) is not None

    def _enqueue(self, nodes: Iterable[str], *, rotate: bool = False) -> None:
        pending = self._pending
        for node_id in nodes:
            pending[node_id] = rotate or pending.get(node_id, False)
        if pending:
            self._wake.set()

    def _notify(self, nodes: Iterable[str]) -> None:
        if self.on_change is not None:
            nodes = list(nodes)
            if nodes:
                self.on_change(nodes)

    # --- issuing ----------------------------------------------------------------------------

    def issue_pending(self, budget: float | None = None) -> list[str]:
        """Issue for pending proxies until ``budget`` seconds of work (default: the
        configured one) are spent; return the node ids that got a certificate."""
        budget = self._budget if budget is None else budget
        started = time.perf_counter()
        done: list[str] = []
        pending = self._pending
        while pending:
            node_id = next(iter(pending))
            rotate = pending.pop(node_id)
            if self._issue(node_id, rotate):
                done.append(node_id)
            if time.perf_counter() - started >= budget:
                break
        if not pending:
            # A dict never shrinks as it empties: drop the table 10,000 issues left behind.
            self._pending = {}
        return done

    def _issue(self, node_id: str, rotate: bool) -> bool:
        need = self._needs.get(node_id)
        if need is None:
            return False
        ca = self._cas.get(need.mesh)
        if ca is None:
            return False  # set_ca enqueues it again when the CA arrives
        if not rotate and self.is_current(node_id):
            return False
        now = self._clock()
        lifetime = ca.backend.cert_lifetime
        identity = issue(
            ca.authority, need.mesh, dict(need.tags), lifetime, now=now, key_type=self._key_type
        )
        message = identity_secret(need.mesh, identity.cert_pem, identity.key_pem)
        previous = self._issued.get(node_id)
        held_since = (
            previous.held_since
            if previous is not None and previous.ca is ca and previous.need.mesh == need.mesh
            else time.monotonic()
        )
        rotate_at = rotation_time(now, lifetime, self._rng)
        self._issued[node_id] = Issued(
            # The name is the mesh's (one string for all its proxies, not one per proxy).
            versioned(types.SECRET, sys.intern(message.name), message),
            identity.not_after,
            need,
            ca,
            issued_at=now,
            generation=0 if previous is None else previous.generation + 1,
            rotate_at=rotate_at,
            held_since=held_since,
        )
        self._schedule.schedule(node_id, rotate_at)
        self.issued_total += 1
        return True

    def rotate_due(self, now: float | None = None) -> int:
        """Queue the certificates due for rotation; return how many."""
        due = [str(k) for k in self._schedule.pop_due(self._clock() if now is None else now)]
        self._enqueue(due, rotate=True)
        return len(due)

    async def run(self) -> None:
        """Issue and rotate until cancelled."""
        while True:
            self.rotate_due()
            while self._pending:
                done = self.issue_pending()
                self._notify(done)
                await anyio.lowlevel.checkpoint()
                self.rotate_due()
            due = self._schedule.next_due()
            self._wake = anyio.Event()
            if self._pending:
                continue
            delay = None if due is None else max(0.0, due - self._clock())
            with anyio.move_on_after(delay):
                await self._wake.wait()
