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
* On reconnect every type is requested again with ``initial_resource_versions`` = what it holds.

The sidecar holds name → version per type and keeps its config digest (:mod:`.wire`) up to date
incrementally; names and versions are interned, so sidecars of one worker share the strings.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import sys
import time
from typing import Any

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.base_pb2 import BuildVersion, Node
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped, unused-ignore]
from grpclib.client import Channel

from kuma.xds.server.service import AggregatedDiscoveryServiceStub

from .envoy_node import envoy_node
from .wire import CDS, EDS, LDS, TYPE_INDEX, TYPES, Digest, entry_hash

ENVOY_VERSION = (1, 40, 0)
_EDS_CACHE_LIMIT = 100_000


class Counters:
    """Per-worker totals (the driver reads differences between two snapshots)."""

    __slots__ = FIELDS = (
        "acks",
        "bytes",
        "connects",
        "errors",
        "nacks",
        "removed",
        "requests",
        "resources",
        "responses",
        "unchanged",
    )

    def __init__(self) -> None:
        self.acks = self.bytes = self.connects = self.errors = self.nacks = 0
        self.removed = self.requests = self.resources = self.responses = self.unchanged = 0

    def snapshot(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.FIELDS}


class Shared:
    """What a worker's sidecars share: target address, counters, probes, caches, events."""

    def __init__(self, host: str, port: int, seed: int) -> None:
        self.host = host
        self.port = port
        self.counters = Counters()
        self.rng = random.Random(seed)
        #: (type index, name) → [(probe id, version or None)]
        self.probes: dict[tuple[int, str], list[tuple[int, str | None]]] = {}
        #: probe id → [(sidecar index, receive time)]
        self.records: dict[int, list[tuple[int, float]]] = {}
        #: (cluster name, version) → EDS service name ("" for a non-EDS cluster).
        self.eds_cache: dict[tuple[str, str], str] = {}
        #: Why streams ended abnormally: exception type name → count.
        self.error_kinds: dict[str, int] = {}
        #: (time, sidecar index) each time a sidecar became converged.
        self.converged_events: list[tuple[float, int]] = []
        self.backoff_base = 0.5
        self.backoff_max = 30.0
        #: TLS to the control plane (its certificate verified), as Envoy does; None: plain.
        self.tls: ssl.SSLContext | None = None
        #: ``envoy``: the full node Envoy 1.40 sends (61 KB, its 516 extensions listed);
        #: ``minimal``: id, cluster, user agent and build version only.
        self.node_style = "envoy"

    def eds_name(self, name: str, version: str, body: bytes) -> str:
        key = (name, version)
        found = self.eds_cache.get(key)
        if found is None:
            cluster = Cluster.FromString(body)
            found = ""
            if cluster.type == Cluster.EDS:
                found = sys.intern(cluster.eds_cluster_config.service_name or cluster.name)
            if len(self.eds_cache) >= _EDS_CACHE_LIMIT:
                self.eds_cache.clear()
            self.eds_cache[key] = found
        return found


def _node(node_id: str, style: str) -> Node:
    cluster = node_id.partition(".")[2]
    if style == "envoy":
        return envoy_node(node_id, cluster)
    major, minor, patch = ENVOY_VERSION
    build = BuildVersion()
    build.version.major_number, build.version.minor_number, build.version.patch = (
        major,
        minor,
        patch,
    )
    return Node(
        id=node_id,
        cluster=cluster,
        user_agent_name="envoy",
        user_agent_build_version=build,
    )


class Sidecar:
    __slots__ = (
        "cds_ok",
        "converged",
        "digest",
        "eds_names",
        "eds_of",
        "expected",
        "held",
        "index",
        "lds_ok",
        "lds_requested",
        "nack",
        "nacked",
        "node_id",
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
        self.lds_requested = False
        self.digest: Digest = (0, 0)
        self.expected: Digest | None = None
        self.nacked = False
        # Per stream: CDS / LDS answered on the current stream.
        self.cds_ok = False
        self.lds_ok = False
        self.streaming = False
        self.converged = False

    # --- the stream -------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, follow the stream, reconnect with backoff until cancelled."""
        shared = self.shared
        attempt = 0
        while True:
            channel = Channel(shared.host, shared.port, ssl=shared.tls)
            try:
                got_response = await self._stream(channel)
                attempt = 0 if got_response else attempt + 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                shared.counters.errors += 1
                kind = type(exc).__name__
                shared.error_kinds[kind] = shared.error_kinds.get(kind, 0) + 1
                attempt += 1
            finally:
                self.streaming = False
                self.cds_ok = self.lds_ok = False
                self._check()
                channel.close()
            ceiling = min(shared.backoff_max, shared.backoff_base * 2 ** min(attempt, 16))
            await asyncio.sleep(shared.rng.uniform(0, ceiling))

    async def _stream(self, channel: Channel) -> bool:
        stub = AggregatedDiscoveryServiceStub(channel)
        got_response = False
        metadata = {"authorization": self.token} if self.token else None
        async with stub.DeltaAggregatedResources.open(metadata=metadata) as stream:
            self.cds_ok = self.lds_ok = False
            await self._send(
                stream,
                DeltaDiscoveryRequest(
                    node=_node(self.node_id, self.shared.node_style),
                    type_url=TYPES[CDS],
                    initial_resource_versions=self.held[CDS],
                ),
            )
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
            if self.lds_requested:
                await self._request_lds(stream)
            while True:
                if self.slow:
                    await asyncio.sleep(self.slow)
                response = await stream.recv_message()
                if response is None:
                    return got_response
                got_response = True
                await self._on_response(stream, response)

    async def _send(self, stream: Any, request: Any) -> None:
        self.shared.counters.requests += 1
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
        if type_index is None or (self.nack and shared.rng.random() < self.nack):
            if type_index is not None:
                # Received, though rejected: the change did reach this sidecar.
                self._record(type_index, response, now)
            self.nacked = True
            counters.nacks += 1
            message = "simulated NACK" if type_index is not None else "unknown type"
            await self._send(
                stream,
                DeltaDiscoveryRequest(
                    type_url=type_url,
                    response_nonce=response.nonce,
                    error_detail=Status(code=3, message=message),
                ),
            )
            return
        self._apply(type_index, response, now)
        if type_index == CDS:
            await self._follow_clusters(stream)
        counters.acks += 1
        await self._send(
            stream, DeltaDiscoveryRequest(type_url=type_url, response_nonce=response.nonce)
        )
        if type_index == CDS:
            self.cds_ok = True
        elif type_index == LDS:
            self.lds_ok = True
        if not self.lds_requested and self.cds_ok and self.eds_names <= self.held[EDS].keys():
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
            if type_index == CDS:
                eds = shared.eds_name(name, version, resource.resource.value)
                if eds:
                    self.eds_of[name] = eds
                else:
                    self.eds_of.pop(name, None)
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
        self.digest = (value, count)

    async def _follow_clusters(self, stream: Any) -> None:
        wanted = set(self.eds_of.values())
        subscribe = wanted - self.eds_names
        unsubscribe = self.eds_names - wanted
        if not subscribe and not unsubscribe:
            return
        held = self.held[EDS]
        value, count = self.digest
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
    def synced(self) -> bool:
        """This stream answered CDS and LDS, and every EDS subscription is held."""
        return self.cds_ok and self.lds_ok and self.eds_names <= self.held[EDS].keys()

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
