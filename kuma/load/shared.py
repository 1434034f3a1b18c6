"""What one worker's sidecars share: the target, the counters, probes and parse caches, and
the node a sidecar sends (see :mod:`.sidecar`)."""

from __future__ import annotations

import asyncio
import random
import ssl
import sys

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.base_pb2 import BuildVersion, Node

from .envoy_node import envoy_node
from .sds import cluster_secrets, listener_secrets
from .wire import entry_hash

ENVOY_VERSION = (1, 40, 0)
_EDS_CACHE_LIMIT = 100_000
_HASH_CACHE_LIMIT = 100_000
_NO_SECRETS: tuple[str, ...] = ()


class Counters:
    """Per-worker totals (the driver reads differences between two snapshots)."""

    __slots__ = FIELDS = (
        "acks",
        "bad_secrets",
        "bytes",
        "connects",
        "errors",
        "nacks",
        "removed",
        "requests",
        "resources",
        "responses",
        "secrets",
        "unchanged",
    )

    def __init__(self) -> None:
        self.acks = self.bytes = self.connects = self.errors = self.nacks = 0
        self.bad_secrets = self.secrets = 0
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
        #: (cluster name, version) → (EDS service name or "" for a non-EDS cluster, Secrets).
        self.eds_cache: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}
        #: (listener name, version) → the Secrets it references.
        self.lds_cache: dict[tuple[str, str], tuple[str, ...]] = {}
        #: (type index, name, version) → its digest entry hash (:func:`.wire.entry_hash`).
        self.hashes: dict[tuple[int, str, str], int] = {}
        #: Interned tuples of Secret names: sidecars share them.
        self.secret_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
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
        #: Bounds the sidecars setting up a connection at once (connect to first response):
        #: a real Envoy has its own CPU; thousands of simulated ones set up on one loop in
        #: lockstep, each step of one behind the same step of all, so a response that has
        #: arrived waits unread (:mod:`.connect_phases`). None: no bound.
        self.connect_gate: asyncio.Semaphore | None = None

    def cluster_info(self, name: str, version: str, body: bytes) -> tuple[str, tuple[str, ...]]:
        """The cluster's EDS service name ("" for none) and the Secrets it references."""
        key = (name, version)
        found = self.eds_cache.get(key)
        if found is None:
            cluster = Cluster.FromString(body)
            eds = ""
            if cluster.type == Cluster.EDS:
                eds = sys.intern(cluster.eds_cluster_config.service_name or cluster.name)
            found = (eds, self._interned(cluster_secrets(cluster)))
            if len(self.eds_cache) >= _EDS_CACHE_LIMIT:
                self.eds_cache.clear()
            self.eds_cache[key] = found
        return found

    def entry_hash(self, type_index: int, name: str, version: str) -> int:
        """:func:`.wire.entry_hash`, computed once per worker: a change reaches many of the
        worker's sidecars with the same name and version (a fan-out: all of them)."""
        key = (type_index, name, version)
        found = self.hashes.get(key)
        if found is None:
            if len(self.hashes) >= _HASH_CACHE_LIMIT:
                self.hashes.clear()
            found = self.hashes[key] = entry_hash(type_index, name, version)
        return found

    def listener_info(self, name: str, version: str, body: bytes) -> tuple[str, ...]:
        key = (name, version)
        found = self.lds_cache.get(key)
        if found is None:
            found = self._interned(listener_secrets(body))
            if len(self.lds_cache) >= _EDS_CACHE_LIMIT:
                self.lds_cache.clear()
            self.lds_cache[key] = found
        return found

    def _interned(self, names: tuple[str, ...]) -> tuple[str, ...]:
        if not names:
            return _NO_SECRETS
        return self.secret_sets.setdefault(names, tuple(sys.intern(n) for n in names))


def node_of(node_id: str, style: str) -> Node:
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
