"""Where a (re)connecting sidecar's time goes: drop → TCP connected → TLS done → first request
sent → first response read, per sidecar, and kuma-cp's and the harness's CPU meanwhile.

Why: in a mass reconnect the first answer comes late (34 s of 59 at 10,000) and two event
loops can be the one it waits for: kuma-cp's, which handshakes, assembles and answers, and each
kuma-load worker's, which handshakes thousands of simulated sidecars on one shared core, so a
response that has arrived may sit unread in its socket. The marks split the wait by side: TCP
is the kernels' (kuma-cp's accept queue), TLS needs both loops, "sent → read" is kuma-cp's work
plus the worker's delay in reading; kuma-cp's CPU busy share up to the first answer tells which.

Each sidecar keeps one list of :data:`MARKS` wall-clock times (0.0: not reached) for its latest
drop; a failed attempt's marks are replaced by the next attempt's until one reads a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Sequence
from typing import Any

from grpclib.client import Channel

from .stats import percentile

#: Indices into a sidecar's marks.
DROP, TCP, TLS, SENT, READ = range(5)
MARKS = ("drop", "tcp", "tls", "sent", "read")

# grpclib builds its connection in ``Channel._create_connection`` (private) from
# ``_protocol_factory``, ``_host``, ``_port``, ``_ssl`` and ``_config`` (grpclib 0.4). Where
# those are missing (another version) sidecars use the plain Channel: no TCP and TLS marks,
# everything else unchanged.
_TIMED = all(hasattr(Channel, name) for name in ("_create_connection", "_protocol_factory"))
_ATTRIBUTES = ("_host", "_port", "_ssl", "_config")


def new_marks() -> list[float]:
    return [0.0] * len(MARKS)


def new_attempt(marks: list[float]) -> None:
    """A connection attempt begins: an earlier failed attempt's marks are forgotten."""
    if not marks[READ]:
        marks[TCP] = marks[TLS] = marks[SENT] = 0.0


def mark(marks: list[float], which: int) -> None:
    """Record ``which`` for the current attempt (only the first time, until the next drop)."""
    if not marks[which]:
        marks[which] = time.time()


class TimedChannel(Channel):
    """grpclib's Channel connecting in two steps, so TCP connected and TLS done are told apart
    (asyncio's ``create_connection`` does both in one call). Same socket options, same TLS."""

    def __init__(self, host: str, port: int, *, ssl: Any, marks: list[float]) -> None:
        super().__init__(host, port, ssl=ssl)
        self._marks = marks
        #: The connected socket (None until TCP is connected).
        self.sock: socket.socket | None = None

    def drop(self) -> bool:
        """End the connection for the server at once (FIN now), leaving this side's teardown
        for later; whether there was a connection to drop. Only the write side is shut: the
        server closes its end when it gets to it, so this side's reads end as the server's
        closes come, not all in one pass of this loop."""
        if self.sock is None:
            return False
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:  # already gone
            return False
        return True

    async def _create_connection(self) -> Any:
        if not all(hasattr(self, name) for name in _ATTRIBUTES):  # pragma: no cover
            return await super()._create_connection()
        loop = asyncio.get_running_loop()
        host, port = self._host, self._port
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
            address: Any = (host, port)
        except ValueError:  # a name: resolve it (the loop's executor)
            family, _, _, _, address = (
                await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            )[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        mark(self._marks, TCP)
        self.sock = sock
        tls = self._ssl
        _, protocol = await loop.create_connection(
            self._protocol_factory,
            sock=sock,
            ssl=tls,
            server_hostname=(self._config.ssl_target_name_override or host) if tls else None,
        )
        mark(self._marks, TLS)
        return protocol


def channel(host: str, port: int, tls: Any, marks: list[float]) -> Channel:
    if _TIMED:
        return TimedChannel(host, port, ssl=tls, marks=marks)
    return Channel(host, port, ssl=tls)  # pragma: no cover - another grpclib


def drop(channel: Channel | None) -> bool:
    """Drop ``channel``'s connection at once (:meth:`TimedChannel.drop`); False where it
    cannot (no connection, or a plain Channel): the caller cancels its stream instead."""
    return isinstance(channel, TimedChannel) and channel.drop()


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"count": 0, "first": None, "p10": None, "p50": None, "p90": None, "max": None}
    values.sort()
    return {
        "count": len(values),
        "first": round(values[0], 3),
        "p10": round(percentile(values, 0.10), 3),
        "p50": round(percentile(values, 0.50), 3),
        "p90": round(percentile(values, 0.90), 3),
        "max": round(values[-1], 3),
    }


def summarize_marks(all_marks: Sequence[Sequence[float]], first: int = 20) -> dict[str, Any]:
    """Per phase, seconds since each sidecar's drop (spread over sidecars); the steps between
    phases; and the steps of the ``first`` sidecars to read a response (whose time the first
    answers are)."""
    reached = [m for m in all_marks if m[DROP]]
    since_drop = {
        name: _spread([m[i] - m[DROP] for m in reached if m[i]])
        for i, name in enumerate(MARKS)
        if i != DROP
    }
    steps = {
        f"{MARKS[i - 1]}_to_{MARKS[i]}": _spread(
            [m[i] - m[i - 1] for m in reached if m[i] and m[i - 1]]
        )
        for i in range(TCP, READ + 1)
    }
    earliest = sorted((m for m in reached if m[READ]), key=lambda m: m[READ])[:first]
    first_steps = {
        f"{MARKS[i - 1]}_to_{MARKS[i]}_median": _median(
            [m[i] - m[i - 1] for m in earliest if m[i] and m[i - 1]]
        )
        for i in range(TCP, READ + 1)
    }
    return {
        "since_drop": since_drop,
        "steps": steps,
        f"first_{first}_answered": {"count": len(earliest), **first_steps},
    }


def _median(values: list[float]) -> float | None:
    return round(percentile(sorted(values), 0.5), 3) if values else None


class CpuSampler:
    """kuma-cp's and the harness's CPU seconds, sampled every ``period`` until stopped, so the
    busy share of any window of the storm (e.g. drop → first answer) can be read after."""

    def __init__(self, cp_cpu: Any, harness_cpu: Any, period: float = 0.1) -> None:
        self._cp_cpu = cp_cpu
        self._harness_cpu = harness_cpu
        self._period = period
        #: (wall time, kuma-cp CPU seconds, harness CPU seconds)
        self.samples: list[tuple[float, float, float]] = []
        self._task: asyncio.Task[None] | None = None

    def _sample(self) -> None:
        self.samples.append((time.time(), self._cp_cpu(), self._harness_cpu()))

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self._period)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample()

    def busy(self, start: float, end: float) -> dict[str, float | None]:
        """Percent of one core kuma-cp and the harness (all workers) used in [start, end]
        (the samples nearest inside the window)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return {"seconds": round(end - start, 3), "cp_percent": None, "harness_percent": None}
        (t0, cp0, h0), (t1, cp1, h1) = inside[0], inside[-1]
        return {
            "seconds": round(end - start, 3),
            "cp_percent": round(100 * (cp1 - cp0) / (t1 - t0), 1),
            "harness_percent": round(100 * (h1 - h0) / (t1 - t0), 1),
        }


def storm_report(
    all_marks: Sequence[Sequence[float]], sampler: CpuSampler, dropped: float, ended: float
) -> dict[str, Any]:
    """The phases of a storm's sidecars, and the busy shares of kuma-cp and the harness from
    the drop to the first answer read and to the end."""
    report = summarize_marks(all_marks)
    first_read = min((m[READ] for m in all_marks if m[READ]), default=0.0)
    if first_read:
        report["busy_until_first_answer"] = sampler.busy(dropped, first_read)
    report["busy_whole_storm"] = sampler.busy(dropped, ended)
    return report
