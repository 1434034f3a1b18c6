"""A worker process: a few thousand sidecars on one asyncio loop, driven over a pipe.

The driver sends ``(command, argument)`` and waits for the one reply before it sends the next
command to the same worker, so neither side ever blocks writing to a full pipe while the other
writes too. Long actions (connecting at a rate, reconnecting everyone) start in the background
and reply at once; the driver follows them by polling ``status``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import ssl
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from kuma.cp.tls import use_small_tls_buffers
from kuma.xds.server import frame_repr

from .connect_phases import DROP, new_marks
from .shared import Shared
from .sidecar import Sidecar
from .wire import Digest

#: Old runs cancelled per loop pass after a ``kick``: small enough that the new connections'
#: handshakes step between batches (a cancellation costs ≈ 0.2 ms: 64 are ≈ 13 ms).
RETIRE_BATCH = 64


def client_tls(ca: str) -> ssl.SSLContext:
    """What a sidecar's Envoy does: TLS 1.2+, HTTP/2 by ALPN, kuma-cp's certificate verified.
    The workers' own TLS read buffers are kept as small as kuma-cp's: thousands of simulated
    sidecars per process must not cost 256 KiB each (the harness is measured too)."""
    use_small_tls_buffers()
    context = ssl.create_default_context(cadata=ca)
    context.set_alpn_protocols(["h2"])
    return context


class Worker:
    def __init__(self) -> None:
        self.shared: Shared | None = None
        self.sidecars: dict[int, Sidecar] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._starter: asyncio.Task[None] | None = None
        #: Runs of sidecars dropped by ``kick``, still to be cancelled (:meth:`_retire`).
        self._stale: list[asyncio.Task[None]] = []
        self._reaper: asyncio.Task[None] | None = None

    # Commands: each returns a picklable reply.

    def init(self, arg: dict[str, Any]) -> int:
        shared = self.shared = Shared(arg["host"], arg["port"], arg["seed"])
        shared.backoff_base = arg.get("backoff_base", shared.backoff_base)
        shared.backoff_max = arg.get("backoff_max", shared.backoff_max)
        if arg.get("connect_concurrency"):
            shared.connect_gate = asyncio.Semaphore(arg["connect_concurrency"])
        shared.node_style = arg.get("node", shared.node_style)
        if arg.get("ca"):
            shared.tls = client_tls(arg["ca"])
        tokens: dict[int, str] = arg.get("tokens") or {}
        for index, node_id, slow, nack in arg["sidecars"]:
            self.sidecars[index] = Sidecar(
                shared, index, node_id, slow=slow, nack=nack, token=tokens.get(index, "")
            )
        return os.getpid()

    def target(self, arg: tuple[str, int]) -> None:
        assert self.shared is not None
        self.shared.host, self.shared.port = arg

    def connect(self, rate: float) -> None:
        """Start every sidecar not started yet, ``rate`` per second (0: all at once)."""
        pending = [i for i in self.sidecars if i not in self.tasks]
        self._start_later(pending, rate)

    def kick(self, rate: float) -> None:
        """Drop every connection and reconnect (``rate`` per second, 0: all at once).

        Every connection ends at once for kuma-cp (each socket's write side shut: a FIN now),
        and the new connections are started before the old streams are torn down: a real
        fleet's Envoys reconnect each on its own, so the first reconnect must not wait behind
        this loop cancelling thousands of old streams (≈ 0.2 ms each). The old runs are
        cancelled afterwards, a batch per loop pass (:meth:`_retire`), between the new
        connections' steps."""
        old, self.tasks = self.tasks, {}
        dropped = time.time()
        for index, sidecar in self.sidecars.items():
            task = old.get(index)
            if task is not None:
                if sidecar.drop():
                    self._stale.append(task)
                else:  # no connection to drop (between attempts): cancelled now
                    task.cancel()
            sidecar.marks[:] = new_marks()
            sidecar.marks[DROP] = dropped
        if rate > 0:
            self._start_later(list(self.sidecars), rate)
        else:
            # Now, not from a task: the new runs' first steps come before anything else.
            if self._starter is not None:
                self._starter.cancel()
            loop = asyncio.get_running_loop()
            for index, sidecar in self.sidecars.items():
                self.tasks[index] = loop.create_task(sidecar.run())
        if self._stale and self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._retire())

    async def _retire(self) -> None:
        """Cancel the dropped connections' old runs, ``RETIRE_BATCH`` per loop pass."""
        try:
            while self._stale:
                batch = self._stale[:RETIRE_BATCH]
                del self._stale[:RETIRE_BATCH]
                for task in batch:
                    task.cancel()
                await asyncio.sleep(0)
        finally:
            self._reaper = None

    def _start_later(self, indices: list[int], rate: float) -> None:
        if self._starter is not None:
            self._starter.cancel()
        self._starter = asyncio.get_running_loop().create_task(self._start(indices, rate))

    async def _start(self, indices: list[int], rate: float) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        for count, index in enumerate(indices):
            if rate > 0:
                delay = began + count / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            self.tasks[index] = loop.create_task(self.sidecars[index].run())

    def expect(self, arg: dict[int, Digest | None]) -> None:
        for index, digest in arg.items():
            self.sidecars[index].set_expected(digest)

    def status(self, _: Any = None) -> dict[str, Any]:
        assert self.shared is not None
        shared = self.shared
        events, shared.converged_events = shared.converged_events, []
        sidecars = self.sidecars.values()
        return {
            "counters": shared.counters.snapshot(),
            "streaming": sum(s.streaming for s in sidecars),
            "synced": sum(s.synced for s in sidecars),
            "converged": sum(s.converged for s in sidecars),
            "nacked": sum(s.nacked for s in sidecars),
            "held": sum(s.digest[1] for s in sidecars),
            "secrets": sum(len(s.secrets) for s in sidecars),
            "events": events,
            "error_kinds": dict(shared.error_kinds),
        }

    def phases(self, _: Any = None) -> list[list[float]]:
        """Every sidecar's connection phase times since its latest drop (:mod:`.connect_phases`)."""
        return [sidecar.marks for sidecar in self.sidecars.values()]

    def probe(self, arg: list[tuple[int, int, str, str | None]]) -> None:
        assert self.shared is not None
        for probe_id, type_index, name, version in arg:
            self.shared.probes.setdefault((type_index, name), []).append((probe_id, version))

    def results(self, probe_ids: list[int]) -> dict[int, list[tuple[int, float]]]:
        """The receipts of these probes; the probes are dropped."""
        assert self.shared is not None
        shared = self.shared
        wanted = set(probe_ids)
        for key in list(shared.probes):
            kept = [p for p in shared.probes[key] if p[0] not in wanted]
            if kept:
                shared.probes[key] = kept
            else:
                del shared.probes[key]
        return {pid: shared.records.pop(pid, []) for pid in probe_ids}

    def peek(self, probes: list[tuple[int, float]]) -> tuple[dict[int, int], list[int]]:
        """How many distinct sidecars received each probe since it was written (probe id,
        write time): a name-only probe also matches receipts from before its write. Sidecars
        that NACKed are left out of the counts and listed."""
        assert self.shared is not None
        records = self.shared.records
        counts: dict[int, int] = {}
        for pid, since in probes:
            fresh = {i for i, at in records.get(pid, ()) if at >= since}
            counts[pid] = sum(not self.sidecars[i].nacked for i in fresh)
        return counts, self.nacked()

    def nacked(self, _: Any = None) -> list[int]:
        """Sidecars that NACKed something: they may never get what depends on it."""
        return [s.index for s in self.sidecars.values() if s.nacked]

    def reset(self, _: Any = None) -> None:
        assert self.shared is not None
        self.shared.converged_events.clear()
        for sidecar in self.sidecars.values():
            sidecar.reset()

    def held(self, indices: list[int]) -> dict[int, dict[int, dict[str, str]]]:
        return {i: {t: dict(v) for t, v in self.sidecars[i].held.items()} for i in indices}

    def secrets(self, indices: list[int]) -> dict[int, dict[str, str]]:
        """Secret name → version held (only Secrets with usable PEM content are kept)."""
        return {i: dict(self.sidecars[i].secrets) for i in indices}

    def mismatches(self, _: Any = None) -> list[tuple[int, Digest, Digest | None, bool]]:
        """(index, digest, expected, synced) of every sidecar that did not NACK and does not
        hold what it should."""
        return [
            (s.index, s.digest, s.expected, s.synced)
            for s in self.sidecars.values()
            if not s.nacked and not s.converged
        ]

    def collect(self, _: Any = None) -> int:
        return gc.collect()

    async def stop(self, _: Any = None) -> None:
        if self._starter is not None:
            self._starter.cancel()
        if self._reaper is not None:
            self._reaper.cancel()
        tasks = [*self.tasks.values(), *self._stale]
        self._stale.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()


async def _serve(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def readable() -> None:
        try:
            inbox.put_nowait(conn.recv())
        except (EOFError, OSError):
            # The driver is gone: stop, so that no worker outlives a crashed run.
            loop.remove_reader(conn.fileno())
            inbox.put_nowait(("stop", None))

    loop.add_reader(conn.fileno(), readable)
    worker = Worker()
    try:
        while True:
            command, arg = await inbox.get()
            handler: Callable[[Any], Any] = getattr(worker, command)
            try:
                result = handler(arg)
                if asyncio.iscoroutine(result):
                    result = await result
                reply: tuple[bool, Any] = (True, result)
            except Exception as exc:  # reported to the driver, which raises it there
                reply = (False, f"{type(exc).__name__}: {exc}")
            if not conn.closed:
                try:
                    conn.send(reply)
                except OSError:
                    return
            if command == "stop":
                return
    finally:
        if not conn.closed:
            loop.remove_reader(conn.fileno())


def worker_main(conn: Connection) -> None:
    """The worker process's entry point (``multiprocessing`` spawn target)."""
    # Many small long-lived objects per sidecar: collecting the old generation now and then
    # is all the cycle collector has to do; freezing what init allocated keeps it cheap.
    gc.set_threshold(50_000, 50, 100)
    # h2 formats every received frame for a trace line nobody writes: the cheap payload text
    # kuma-cp uses (the same text) saves ~1.5 % of a worker's CPU in a fan-out.
    frame_repr.install()
    asyncio.run(_serve(conn))
