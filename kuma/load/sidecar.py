"""One simulated sidecar: what Envoy 1.40 does on a delta ADS stream, and nothing more.

* One HTTP/2 connection (its own grpclib ``Channel``) and one ``DeltaAggregatedResources``
  stream; node id ``<mesh>.<name>``, the rest of the node as Envoy 1.40 sends it (61 KB: it
  lists Envoy's 516 extensions; see :mod:`.envoy_node`).
* CDS first, as a legacy wildcard (no names). Every EDS cluster received subscribes its
  ClusterLoadAssignment, a cluster that goes unsubscribes it (and the sidecar forgets it). The
  EDS request for a CDS response goes before that response's ACK, as Envoy's paused mux does.
  LDS (legacy wildcard too) is requested once the first clusters are warm: CDS received and
  every subscribed EDS name held, as Envoy's init manager does.
* Every response is ACKed, or NACKed with probability ``nack`` (a NACKed response is not
  applied, as Envoy keeps its last accepted state).
* SDS (mesh mTLS): the Secrets its clusters and listeners reference are subscribed by name
  (sent before that response's ACK, as for EDS) and one without usable PEM content is NACKed
  (:mod:`.sds`); clusters are warm, and the sidecar synced, only once they are held. Secrets
  stay out of the digest: their content is per-proxy key material the reference cannot know.
* On reconnect every type is requested again with ``initial_resource_versions`` = what it holds.

The sidecar holds name → version per type and keeps its config digest (:mod:`.wire`) up to date
incrementally; names and versions are interned, so sidecars of one worker share the strings.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped, unused-ignore]
from grpclib.client import Channel

from kuma.xds.server.service import AggregatedDiscoveryServiceStub

from . import connect_phases
from .connect_phases import DROP, READ, SENT, mark, new_attempt, new_marks
from .fast_send import try_send
from .sds import secret_problem
from .shared import Shared, node_of
from .wire import CDS, EDS, LDS, SDS, TYPE_INDEX, TYPES, Digest


class Sidecar:
    __slots__ = (
        "cds_ok",
        "channel",
        "converged",
        "digest",
        "eds_names",
        "eds_of",
        "expected",
        "gated",
        "generation",
        "held",
        "index",
        "lds_ok",
        "lds_requested",
        "marks",
        "nack",
        "nacked",
        "node_id",
        "sds_names",
        "sds_of",
        "secrets",
        "shared",
        "slow",
        "streaming",
        "token",
    )

    def __init__(
        self,
        shared: Shared,
        index: int,
        node_id: str,
        *,
        slow: float = 0.0,
        nack: float = 0.0,
        token: str = "",
    ) -> None:
        self.shared = shared
        #: The proxy's dataplane token, sent as ``authorization`` metadata (empty: none).
        self.token = token
        self.index = index
        self.node_id = node_id
        self.slow = slow
        self.nack = nack
        self.held: dict[int, dict[str, str]] = {CDS: {}, EDS: {}, LDS: {}}
        #: EDS cluster name → the name its endpoints are subscribed under.
        self.eds_of: dict[str, str] = {}
        self.eds_names: set[str] = set()
        #: (type index, cluster or listener name) → the Secrets it references (if any).
        self.sds_of: dict[tuple[int, str], tuple[str, ...]] = {}
        #: Secret names subscribed, and name → version of those held (valid ones only).
        self.sds_names: set[str] = set()
        self.secrets: dict[str, str] = {}
        self.lds_requested = False
        self.digest: Digest = (0, 0)
        self.expected: Digest | None = None
        self.nacked = False
        # Per stream: CDS / LDS answered on the current stream.
        self.cds_ok = False
        self.lds_ok = False
        self.streaming = False
        self.converged = False
        #: Wall-clock times of this (re)connection's phases (:mod:`.connect_phases`).
        self.marks = new_marks()
        #: Holds a place of the worker's connect gate (from connect to first response).
        self.gated = False
        #: The current attempt's channel (None between attempts).
        self.channel: Channel | None = None
        #: Bumped by :meth:`drop`: a :meth:`run` started before it is over and leaves the
        #: sidecar's state to the next one.
        self.generation = 0

    # --- the stream -------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, follow the stream, reconnect with backoff until cancelled or dropped."""
        shared = self.shared
        attempt = 0
        marks = self.marks
        mark(marks, DROP)
        gate = shared.connect_gate
        generation = self.generation
        while True:
            new_attempt(marks)
            if gate is not None:
                await gate.acquire()
                self.gated = True
            channel = self.channel = connect_phases.channel(
                shared.host, shared.port, shared.tls, marks
            )
            try:
                got_response = await self._stream(channel, generation)
                attempt = 0 if got_response else attempt + 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.generation == generation:
                    shared.counters.errors += 1
                    kind = type(exc).__name__
                    shared.error_kinds[kind] = shared.error_kinds.get(kind, 0) + 1
                attempt += 1
            finally:
                if self.generation == generation:
                    self._ungate()
                    self.channel = None
                    self.streaming = False
                    self.cds_ok = self.lds_ok = False
                    self._check()
                channel.close()
            if self.generation != generation:
                return  # dropped (:meth:`drop`): the sidecar's next run reconnects
            ceiling = min(shared.backoff_max, shared.backoff_base * 2 ** min(attempt, 16))
            await asyncio.sleep(shared.rng.uniform(0, ceiling))

    def drop(self) -> bool:
        """The connection is dropped now (the server sees it go at once); the running
        :meth:`run` becomes stale: it stops touching this sidecar and ends once its stream
        does (or is cancelled), and the next :meth:`run` owns the sidecar. Whether there was a
        connection to drop (False: the caller cancels the stale run instead)."""
        channel = self.channel
        self.generation += 1
        self.channel = None
        self._ungate()
        self.streaming = False
        self.cds_ok = self.lds_ok = False
        self._check()
        return connect_phases.drop(channel)

    async def _stream(self, channel: Channel, generation: int) -> bool:
        stub = AggregatedDiscoveryServiceStub(channel)
        got_response = False
        metadata = {"authorization": self.token} if self.token else None
        async with stub.DeltaAggregatedResources.open(metadata=metadata) as stream:
            self.cds_ok = self.lds_ok = False
            await self._send(
                stream,
                DeltaDiscoveryRequest(
                    node=node_of(self.node_id, self.shared.node_style),
                    type_url=TYPES[CDS],
                    initial_resource_versions=self.held[CDS],
                ),
            )
            mark(self.marks, SENT)
            self.streaming = True
            self.shared.counters.connects += 1
            if self.eds_names:
                await self._send(
                    stream,
                    DeltaDiscoveryRequest(
                        type_url=TYPES[EDS],
                        resource_names_subscribe=sorted(self.eds_names),
                        initial_resource_versions=self.held[EDS],
                    ),
                )
            if self.sds_names:
                await self._send(
                    stream,
                    DeltaDiscoveryRequest(
                        type_url=TYPES[SDS],
                        resource_names_subscribe=sorted(self.sds_names),
                        initial_resource_versions=self.secrets,
                    ),
                )
            if self.lds_requested:
                await self._request_lds(stream)
            while True:
                if self.slow:
                    await asyncio.sleep(self.slow)
                response = await stream.recv_message()
                if response is None or self.generation != generation:
                    return got_response  # ended, or dropped (what comes late is not applied)
                if not got_response:
                    mark(self.marks, READ)
                    self._ungate()
                got_response = True
                await self._on_response(stream, response)

    def _ungate(self) -> None:
        if self.gated:
            self.gated = False
            gate = self.shared.connect_gate
            assert gate is not None
            gate.release()

    async def _send(self, stream: Any, request: Any) -> None:
        self.shared.counters.requests += 1
        if not try_send(stream, request):
            await stream.send_message(request)

    async def _request_lds(self, stream: Any) -> None:
        self.lds_requested = True
        await self._send(
            stream,
            DeltaDiscoveryRequest(type_url=TYPES[LDS], initial_resource_versions=self.held[LDS]),
        )

    # --- one response -----------------------------------------------------------------

    async def _on_response(self, stream: Any, response: Any) -> None:
        shared = self.shared
        counters = shared.counters
        now = time.time()
        counters.responses += 1
        counters.bytes += response.ByteSize()
        type_url: str = response.type_url
        type_index = TYPE_INDEX.get(type_url)
        problem = self._secret_problem(response) if type_index == SDS else None
        if problem is not None:
            counters.bad_secrets += 1
        if (
            type_index is None
            or problem is not None
            or (self.nack and shared.rng.random() < self.nack)
        ):
            if type_index is not None:
                # Received, though rejected: the change did reach this sidecar.
                self._record(type_index, response, now)
            self.nacked = True
            counters.nacks += 1
            message = problem or ("simulated NACK" if type_index is not None else "unknown type")
            await self._send(
                stream,
                DeltaDiscoveryRequest(
                    type_url=type_url,
                    response_nonce=response.nonce,
                    error_detail=Status(code=3, message=message),
                ),
            )
            return
        if type_index == SDS:
            self._apply_secrets(response, now)
        else:
            self._apply(type_index, response, now)
        if type_index == CDS:
            await self._follow_clusters(stream)
        if type_index in (CDS, LDS):
            await self._follow_secrets(stream)
        counters.acks += 1
        await self._send(
            stream, DeltaDiscoveryRequest(type_url=type_url, response_nonce=response.nonce)
        )
        if type_index == CDS:
            self.cds_ok = True
        elif type_index == LDS:
            self.lds_ok = True
        if not self.lds_requested and self.cds_ok and self._warm:
            await self._request_lds(stream)
        self._check()

    def _record(self, type_index: int, response: Any, now: float) -> None:
        probes = self.shared.probes
        for resource in response.resources:
            waiting = probes.get((type_index, resource.name))
            if waiting:
                for probe_id, wanted in waiting:
                    if wanted is None or wanted == resource.version:
                        self.shared.records.setdefault(probe_id, []).append((self.index, now))

    def _apply(self, type_index: int, response: Any, now: float) -> None:
        shared = self.shared
        counters = shared.counters
        probes = shared.probes
        held = self.held.setdefault(type_index, {})
        value, count = self.digest
        intern = sys.intern
        entry_hash = shared.entry_hash
        for resource in response.resources:
            name = intern(resource.name)
            version = intern(resource.version)
            counters.resources += 1
            old = held.get(name)
            if old == version:
                counters.unchanged += 1
            else:
                if old is not None:
                    value ^= entry_hash(type_index, name, old)
                    count -= 1
                value ^= entry_hash(type_index, name, version)
                count += 1
                held[name] = version
            sds: tuple[str, ...] | None = None
            if type_index == CDS:
                eds, sds = shared.cluster_info(name, version, resource.resource.value)
                if eds:
                    self.eds_of[name] = eds
                else:
                    self.eds_of.pop(name, None)
            elif type_index == LDS:
                sds = shared.listener_info(name, version, resource.resource.value)
            if sds:
                self.sds_of[(type_index, name)] = sds
            elif sds is not None:
                self.sds_of.pop((type_index, name), None)
            waiting = probes.get((type_index, name))
            if waiting:
                for probe_id, wanted in waiting:
                    if wanted is None or wanted == version:
                        shared.records.setdefault(probe_id, []).append((self.index, now))
        for name in response.removed_resources:
            counters.removed += 1
            old = held.pop(name, None)
            if old is not None:
                value ^= entry_hash(type_index, name, old)
                count -= 1
            if type_index == CDS:
                self.eds_of.pop(name, None)
            self.sds_of.pop((type_index, name), None)
        self.digest = (value, count)

    def _secret_problem(self, response: Any) -> str | None:
        for resource in response.resources:
            problem = secret_problem(resource.name, resource.resource.value)
            if problem is not None:
                return problem
        return None

    def _apply_secrets(self, response: Any, now: float) -> None:
        counters = self.shared.counters
        self._record(SDS, response, now)
        for resource in response.resources:
            counters.resources += 1
            counters.secrets += 1
            name = sys.intern(resource.name)
            if self.secrets.get(name) == resource.version:
                counters.unchanged += 1
            self.secrets[name] = sys.intern(resource.version)
        for name in response.removed_resources:
            counters.removed += 1
            self.secrets.pop(name, None)

    async def _follow_secrets(self, stream: Any) -> None:
        """Subscribe the Secrets the clusters and listeners now reference, drop the others."""
        wanted: set[str] = set()
        for names in self.sds_of.values():
            wanted.update(names)
        subscribe = wanted - self.sds_names
        unsubscribe = self.sds_names - wanted
        if not subscribe and not unsubscribe:
            return
        for name in unsubscribe:
            self.secrets.pop(name, None)
        self.sds_names = wanted
        await self._send(
            stream,
            DeltaDiscoveryRequest(
                type_url=TYPES[SDS],
                resource_names_subscribe=sorted(subscribe),
                resource_names_unsubscribe=sorted(unsubscribe),
            ),
        )

    async def _follow_clusters(self, stream: Any) -> None:
        wanted = set(self.eds_of.values())
        subscribe = wanted - self.eds_names
        unsubscribe = self.eds_names - wanted
        if not subscribe and not unsubscribe:
            return
        held = self.held[EDS]
        value, count = self.digest
        entry_hash = self.shared.entry_hash
        for name in unsubscribe:
            # Envoy forgets the endpoints of a cluster it removed (and re-subscribes later).
            old = held.pop(name, None)
            if old is not None:
                value ^= entry_hash(EDS, name, old)
                count -= 1
        self.digest = (value, count)
        self.eds_names = wanted
        await self._send(
            stream,
            DeltaDiscoveryRequest(
                type_url=TYPES[EDS],
                resource_names_subscribe=sorted(subscribe),
                resource_names_unsubscribe=sorted(unsubscribe),
            ),
        )

    # --- convergence ------------------------------------------------------------------

    @property
    def _warm(self) -> bool:
        """Every EDS and SDS subscription is held (Envoy's cluster warming)."""
        return self.eds_names <= self.held[EDS].keys() and self.sds_names <= self.secrets.keys()

    @property
    def synced(self) -> bool:
        """This stream answered CDS and LDS, and every EDS and SDS subscription is held."""
        return self.cds_ok and self.lds_ok and self._warm

    def _check(self) -> None:
        converged = self.synced and (self.expected is None or self.digest == self.expected)
        if converged and not self.converged:
            self.shared.converged_events.append((time.time(), self.index))
        self.converged = converged

    def set_expected(self, expected: Digest | None) -> None:
        self.expected = expected
        self._check()

    def reset(self) -> None:
        """Forget convergence and the current stream's answers: the sidecar counts as
        converged again only once a stream (the next one, in the restart and reconnect
        scenarios) has answered CDS and LDS and it holds what it should."""
        self.converged = False
        self.cds_ok = self.lds_ok = False
