"""A run's setup and the driver's primitives: write the mesh, start the control plane and the
workers, connect sidecars, wait for convergence, make a change and time its delivery."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from kuma.xds.generate.tls import identity_secret_name

from .credentials import read_ca, sign_tokens, signing_key
from .mesh import MeshSpec, Plan, Revisions, node_id, policy_change_document, service_name
from .pool import Pool
from .procs import (
    Etcd,
    ManagedProcess,
    Observed,
    free_port,
    run_queue_wait,
    start_control_plane,
)
from .progress import Progress
from .reference import Prediction, Reference
from .stats import Written, latencies, merge_counters
from .stores import StoreWriter, open_writer
from .wire import CDS, SDS, Digest

#: Seconds between asking the workers how many sidecars got a change. The latencies come from
#: each receipt's own timestamp, so this only decides when the wait ends; each ask costs every
#: worker a pass over the change's receipts and a message, on the core the sidecars share (at
#: 10 ms, asking and answering were ~12 % of a worker's py-spy samples in a 2,000-sidecar
#: fan-out; the saving was below the noise of an A/B on a loaded machine).
DELIVERY_POLL = 0.05


class Options(msgspec.Struct, kw_only=True):
    spec: MeshSpec = msgspec.field(default_factory=MeshSpec)
    #: ``kuma`` (start kuma-cp), ``baseline`` (start the snapshot baseline), ``external``.
    cp: str = "kuma"
    target: str | None = None
    cp_pid: int | None = None
    store: str = "directory"
    location: str | None = None
    etcd_prefix: str = "/kuma"
    workers: int = 2
    rate: float = 500.0
    cp_cpus: set[int] | None = None
    harness_cpus: set[int] | None = None
    cp_log_level: str = "info"
    #: The baseline regenerates the ``affected`` proxies per change, or every proxy of the mesh.
    baseline_scope: str = "affected"
    #: Log the control plane's garbage-collection pauses (``kuma.load.gcwrap``).
    cp_gc_log: bool = False
    slow_fraction: float = 0.0
    slow_delay: float = 0.05
    nack_fraction: float = 0.0
    backoff_max: float = 30.0
    #: Connection setups (connect to first response) in flight per worker at most; 0: no
    #: bound (every sidecar of a worker sets up at once, :mod:`.connect_phases`).
    connect_concurrency: int = 0
    #: The node of the first request: ``envoy`` (what Envoy 1.40 sends) or ``minimal``.
    node: str = "envoy"
    #: Check convergence against the reference (exact resources); off: "settled" only.
    exact: bool = True
    timeout: float = 300.0
    progress: bool = True
    seed: int = 1
    #: kuma-cp with TLS and dataplane tokens on (what operators run), the sidecars verifying
    #: its certificate and sending a token each; off (``--insecure``): plain text, no tokens.
    secure: bool = True
    #: More environment for the control plane (a zone's multizone settings: .zone_harness).
    cp_env: dict[str, str] = msgspec.field(default_factory=dict)


class Harness:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.plan = Plan(options.spec)
        self.revisions = Revisions(self.plan)
        self.reference: Reference | None = None
        self.writer: StoreWriter | None = None
        self.cp: ManagedProcess | Observed | None = None
        self.etcd: Etcd | None = None
        self.pool: Pool | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.location = options.location or ""
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        self._probes = 0
        self.notes: dict[str, Any] = {}
        #: The control plane now served: ``kuma``, ``baseline`` or ``external``.
        self.kind = options.cp
        self._api_port = 0
        #: kuma-cp's work dir when secure (its kuma-cp.crt), and what the sidecars then carry.
        self._work_dir: tempfile.TemporaryDirectory[str] | None = None
        self.ca = ""
        self.tokens: dict[int, str] = {}
        #: With mTLS: the probe on every sidecar's identity Secret, registered before the first
        #: connection (so a sidecar's first certificate and its replacements are all timed).
        self.identity_probe: int | None = None

    @property
    def count(self) -> int:
        return self.plan.count

    # --- setup / teardown -----------------------------------------------------------

    async def setup(self, *, sidecars: bool = True) -> None:
        """Write the mesh, start the control plane and (unless not ``sidecars``) the workers."""
        options = self.options
        if options.harness_cpus:
            os.sched_setaffinity(0, options.harness_cpus)
        rest = options.store == "rest" and options.cp != "external"
        if rest:
            # kuma-cp's API is the store's door: start it first, on a port known in advance.
            self._api_port = free_port()
            self.location = f"http://127.0.0.1:{self._api_port}"
            await self.start_cp()
        if options.cp != "external" or options.location:
            await self._write_mesh()
        if options.exact and options.cp == "kuma":
            started = time.perf_counter()
            self.reference = Reference(self.plan, self.revisions)
            self.notes["reference_seconds"] = round(time.perf_counter() - started, 2)
        if options.cp != "external":
            if not rest:
                await self.start_cp()
        else:
            if options.target is None:
                raise ValueError("--cp external needs --target host:port")
            host, _, port = options.target.rpartition(":")
            self.host, self.port = host or "127.0.0.1", int(port)
            if options.cp_pid is not None:
                self.cp = Observed(options.cp_pid)
        if sidecars:
            self.pool = Pool(options.workers, options.harness_cpus)
            await self._init_sidecars()

    async def _write_mesh(self) -> None:
        options = self.options
        if options.store == "directory" and not self.location:
            self._temp = tempfile.TemporaryDirectory(prefix="kuma-load-")
            self.location = self._temp.name
        if options.store == "etcd" and not self.location:
            self.etcd = Etcd(options.cp_cpus)
            self.location = self.etcd.endpoint
        self.writer = open_writer(options.store, self.location, etcd_prefix=options.etcd_prefix)
        started = time.perf_counter()
        documents = [self.plan.mesh_document(), *self.plan.policy_documents()]
        documents += [self.revisions.document(i) for i in range(self.count)]
        await self.writer.write_all(documents)
        self.notes["write_seconds"] = round(time.perf_counter() - started, 2)

    async def start_cp(self, port: int = 0, kind: str | None = None) -> None:
        options = self.options
        self.kind = kind or self.kind
        secure = options.secure and self.kind == "kuma"
        if secure and self._work_dir is None:
            self._work_dir = tempfile.TemporaryDirectory(prefix="kuma-load-cp-")
        if secure and not self._api_port:
            self._api_port = free_port()  # to read the signing key
        started = time.perf_counter()
        self.cp, self.port = await asyncio.to_thread(
            start_control_plane,
            self.kind,
            store=options.store,
            location=self.location,
            port=port,
            cpus=options.cp_cpus,
            log_level=options.cp_log_level,
            etcd_prefix=options.etcd_prefix,
            api_port=self._api_port,
            extra_env={"KUMA_LOAD_BASELINE_SCOPE": options.baseline_scope, **options.cp_env},
            gc_log=options.cp_gc_log,
            work_dir=self._work_dir.name if secure and self._work_dir is not None else None,
        )
        self.notes["cp_start_seconds"] = round(time.perf_counter() - started, 2)
        if secure and self._work_dir is not None and not self.tokens:
            started = time.perf_counter()
            self.ca = read_ca(Path(self._work_dir.name))
            key = await asyncio.to_thread(signing_key, self._api_port, self.plan.spec.mesh)
            ids = {i: node_id(self.plan.spec, i) for i in range(self.count)}
            self.tokens = await asyncio.to_thread(sign_tokens, key, ids)
            self.notes["tokens_seconds"] = round(time.perf_counter() - started, 2)

    async def _init_sidecars(self) -> None:
        assert self.pool is not None
        options = self.options
        slow_every = round(1 / options.slow_fraction) if options.slow_fraction > 0 else 0
        parts: list[list[tuple[int, str, float, float]]] = [[] for _ in range(self.pool.size)]
        for index in range(self.count):
            slow = options.slow_delay if slow_every and index % slow_every == 0 else 0.0
            parts[index % self.pool.size].append(
                (index, node_id(self.plan.spec, index), slow, options.nack_fraction)
            )
        await self.pool.each(
            "init",
            [
                {
                    "host": self.host,
                    "port": self.port,
                    "seed": options.seed * 7919 + w,
                    "backoff_max": options.backoff_max,
                    "connect_concurrency": options.connect_concurrency,
                    "node": options.node,
                    "sidecars": part,
                    "ca": self.ca,
                    "tokens": {index: self.tokens[index] for index, *_ in part if self.tokens},
                }
                for w, part in enumerate(parts)
            ],
        )
        await self.push_expected(range(self.count))
        if self.plan.spec.mtls:
            identity = Prediction(SDS, identity_secret_name(self.plan.spec.mesh), "", ())
            [self.identity_probe] = await self.register([identity])

    def is_slow(self, index: int) -> bool:
        fraction = self.options.slow_fraction
        return fraction > 0 and index % round(1 / fraction) == 0

    async def push_expected(self, indices: Any) -> None:
        assert self.pool is not None
        reference = self.reference if self.exact else None
        expected: dict[int, Digest | None] = {
            index: reference.digests[index] if reference is not None else None for index in indices
        }
        await self.pool.each("expect", self.pool.split(expected))

    @property
    def exact(self) -> bool:
        return self.options.exact and self.reference is not None and self.kind == "kuma"

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.cp is not None:
            self.cp.stop()
        if self.writer is not None:
            await self.writer.close()
        if self.etcd is not None:
            self.etcd.stop()
        if self._temp is not None:
            self._temp.cleanup()
        if self._work_dir is not None:
            self._work_dir.cleanup()

    # --- observing ------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        assert self.pool is not None
        parts = await self.pool.all("status")
        merged: dict[str, Any] = {
            key: sum(p[key] for p in parts)
            for key in ("streaming", "synced", "converged", "nacked", "held", "secrets")
        }
        merged["counters"] = merge_counters(p["counters"] for p in parts)
        merged["events"] = sorted(e for p in parts for e in p["events"])
        merged["error_kinds"] = merge_counters(p["error_kinds"] for p in parts)
        return merged

    async def wait_converged(self, label: str, within: float | None = None) -> dict[str, Any]:
        """Poll until every sidecar converged (NACKing ones excepted); the convergence events
        seen meanwhile come back under ``events``."""
        limit = within or self.options.timeout
        started = time.monotonic()
        events: list[tuple[float, int]] = []
        bar = Progress(label, self.count, enabled=self.options.progress)
        try:
            while True:
                status = await self.status()
                events.extend(status["events"])
                done = status["converged"] + status["nacked"]
                bar.update(status["converged"], f"streams {status['streaming']}")
                if done >= self.count:
                    status["events"] = events
                    status["ok"] = True
                    return status
                if time.monotonic() - started > limit:
                    status["events"] = events
                    status["ok"] = False
                    return status
                # Polling walks every sidecar in the workers: slower for big runs.
                await asyncio.sleep(0.1 if self.count <= 2000 else 0.25)
        finally:
            bar.close()

    def cp_cpu(self) -> float:
        return self.cp.cpu_seconds() if self.cp is not None else 0.0

    def cp_rss(self) -> int:
        return self.cp.rss() if self.cp is not None else 0

    def gc_pauses(self, since: float) -> dict[str, Any] | None:
        """The control plane's collection pauses since ``since`` (with ``--cp-gc-log``)."""
        if not self.options.cp_gc_log or not isinstance(self.cp, ManagedProcess):
            return None
        logged = [(gen, ms) for at, gen, ms in self.cp.gc_pauses if at >= since]
        pauses = [ms for _, ms in logged]
        return {
            "count": len(pauses),
            "max_ms": max(pauses, default=0.0),
            "total_ms": round(sum(pauses), 1),
            "total_ms_by_generation": {
                str(gen): round(sum(ms for g, ms in logged if g == gen), 1)
                for gen in sorted({g for g, _ in logged})
            },
        }

    def waits(self) -> tuple[float, float]:
        """Run-queue wait (s) of the control plane and of the workers: CPU contention."""
        assert self.pool is not None
        cp = self.cp.run_queue_wait() if self.cp is not None else 0.0
        return cp, sum(run_queue_wait(w.process.pid or 0) for w in self.pool.workers)

    def harness_usage(self) -> tuple[float, int]:
        """CPU seconds and RSS of the worker processes together."""
        assert self.pool is not None
        cpu, rss = 0.0, 0
        for process in self.pool.processes():
            times = process.cpu_times()
            cpu += times.user + times.system
            rss += process.memory_info().rss
        return cpu, rss

    # --- changing the mesh ------------------------------------------------------------

    def predict(self, proxy: int) -> tuple[dict[str, Any], Prediction]:
        """Bump ``proxy``'s revision; its new document and what it should deliver."""
        change = self.revisions.next_change(proxy)
        document = self.revisions.document(proxy)
        if self.reference is not None:
            prediction = self.reference.apply(change)
        else:
            service = self.plan.service_of[proxy]
            name = document["networking"]["inbound"][0]["tags"]["kuma.io/service"]
            prediction = Prediction(1, name, "", tuple(self.plan.consumers(service)))
        if not self.exact:
            # Versions are the server's own: match on the name, first receipt after the write.
            prediction = Prediction(prediction.type_index, prediction.name, "", prediction.affected)
        return document, prediction

    def predict_policy(self, value: int) -> tuple[dict[str, Any], Prediction]:
        """The policy scenario's MeshTimeout with connect timeout ``value`` seconds, and what
        it should deliver: a changed Cluster to every proxy of the tagged group."""
        document = policy_change_document(self.plan.spec, value)
        if self.reference is not None:
            prediction = self.reference.apply_policy(document)
        else:
            group = sorted(self.plan.policy_group)
            name = service_name(self.plan.calls[group[0]][0]) if group else ""
            prediction = Prediction(CDS, name, "", tuple(group))
        if not self.exact:
            prediction = Prediction(prediction.type_index, prediction.name, "", prediction.affected)
        return document, prediction

    async def register(self, predictions: list[Prediction]) -> list[int]:
        assert self.pool is not None
        probes = []
        ids = []
        for prediction in predictions:
            self._probes += 1
            ids.append(self._probes)
            probes.append(
                (self._probes, prediction.type_index, prediction.name, prediction.version or None)
            )
        await self.pool.all("probe", probes)
        return ids

    async def write(self, document: dict[str, Any]) -> float:
        assert self.writer is not None
        written_at = time.time()
        await self.writer.write(document)
        return written_at

    async def receipts(self, probe_ids: list[int]) -> dict[int, list[tuple[int, float]]]:
        assert self.pool is not None
        merged: dict[int, list[tuple[int, float]]] = {pid: [] for pid in probe_ids}
        for part in await self.pool.all("results", probe_ids):
            for pid, found in part.items():
                merged[pid].extend(found)
        return merged

    async def wait_delivered(
        self, changes: list[Written], within: float = 30.0
    ) -> tuple[list[tuple[int, float]], int]:
        """Wait until every affected sidecar got its change (or ``within`` seconds pass); the
        latencies (see :func:`.stats.latencies`). The probes are dropped afterwards."""
        assert self.pool is not None
        pids = [c.probe for c in changes]
        excused: frozenset[int] = frozenset()
        # Changes of one resource may coalesce (a sidecar gets only the latest version), so only
        # the last change of each resource is sure to reach all its sidecars: wait for those.
        last: dict[tuple[int, str], Written] = {}
        for change in changes:
            last[(change.type_index, change.name)] = change
        waited = list(last.values())
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            counts: dict[int, int] = {c.probe: 0 for c in waited}
            since = [(c.probe, c.written_at) for c in waited]
            nacked: set[int] = set()
            for part, rejecting in await self.pool.all("peek", since):
                nacked.update(rejecting)
                for pid, seen in part.items():
                    counts[pid] += seen
            excused = frozenset(nacked)
            if all(counts[c.probe] >= len(set(c.affected) - excused) for c in waited):
                break
            await asyncio.sleep(DELIVERY_POLL)
        return latencies(changes, await self.receipts(pids), excused)
