"""The process's open-file budget: every connected proxy holds one descriptor, and so does
every store file, watch and API client.

- **The soft limit is raised to the hard one** when kuma-cp starts (:func:`raise_soft_limit`),
  as Go programs (Kuma among them) do: systemd's default soft limit of 1,024 would otherwise
  cap a control plane at about a thousand sidecars while the hard limit allows far more.
- **Connections stop short of the limit** (:func:`connection_ceiling`): the dp port refuses a
  new connection whose descriptor is at or above ``limit - RESERVE`` (kuma/xds/server/
  admission.py), so the store, its watches and the API keep descriptors to work with when
  proxies fill the rest. Linux hands out the lowest free descriptor, so a connection whose
  number is below the ceiling is one of fewer than ``limit - RESERVE`` open ones, and the
  connections kept never take the reserve.
- **Out of descriptors is one warning, not a storm** (:class:`AcceptFailures`): when accept()
  fails with EMFILE, asyncio logs the error with its traceback once per pending connection
  (up to the listen backlog, 4,096 here) and retries every second: at 20,000 connections that
  took the whole core and kuma-cp stopped serving (benchmarks/RESULTS.md). The loop's
  exception handler turns those into a warning every ``interval`` seconds with a count.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from typing import Any

log = logging.getLogger("kuma.open_files")

#: Descriptors kept out of the dp port's reach, for the store, watches, API and KDS clients.
RESERVE = 256

#: What asyncio's accept loop reports when accept() fails for lack of a resource.
_ACCEPT_MESSAGE = "socket.accept() out of system resource"
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def soft_limit() -> int:
    """The process's current limit on open descriptors."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 2**31 - 1


def raise_soft_limit() -> tuple[int, int]:
    """Raise the soft limit on open descriptors to the hard one; returns (soft, hard) after.
    An unlimited hard limit is left alone (the kernel's ``fs.nr_open`` caps it anyway)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # a sandbox may forbid it: keep what we have
            log.warning("could not raise the open files limit to %d: %s", hard, exc)
        else:
            soft = hard
    return soft, hard


def connection_ceiling(reserve: int = RESERVE) -> int:
    """The descriptor number from which the dp port refuses new connections."""
    return max(soft_limit() - reserve, 1)


class Every:
    """Says when a repeated event is due to be reported again: at most once per ``interval``
    seconds, with how many happened since the last report."""

    __slots__ = ("_last", "count", "interval")

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: float | None = None
        #: Events not yet reported.
        self.count = 0

    def due(self) -> int:
        """Count one event; returns how many to report now (0: not yet)."""
        self.count += 1
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            return 0
        self._last = now
        count, self.count = self.count, 0
        return count


class AcceptFailures:
    """The event loop's exception handler: accept() failures for lack of a resource become one
    warning per ``interval`` (no traceback); every other report goes to the default handler."""

    def __init__(self, interval: float = 10.0) -> None:
        self._every = Every(interval)
        #: Failed accepts seen, for tests and metrics.
        self.failures = 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(self)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if context.get("message") != _ACCEPT_MESSAGE or not (
            isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRORS
        ):
            loop.default_exception_handler(context)
            return
        self.failures += 1
        count = self._every.due()
        if count:
            log.warning(
                "cannot accept connections: %s (open files limit %d); they wait in the listen "
                "backlog; raise the limit (systemd: LimitNOFILE) [%d failed accepts]",
                exc.strerror or errno.errorcode.get(exc.errno or 0, "?"),
                soft_limit(),
                count,
            )
