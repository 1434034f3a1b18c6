"""The teardown of lost dp connections, at most ``BATCH`` per event-loop pass.

Why: when every proxy drops at once (a network blip, a fleet restarting) and reconnects, the
event loop gets thousands of lost connections together with the first new ones. Torn down
right away, each lost connection's work (OpenSSL's state freed, grpclib terminating its
streams, their tasks cancelled, the ADS streams' ends: watches, observers, logging) runs in the
loop passes right after, and a new connection's handshake, which steps once per pass, waits
for all of it: the first reconnecting proxy was answered only after every close was handled.
Spread, each pass tears down at most ``BATCH`` connections beside the new connections' steps
(admission keeps those to its own bound): the total work is the same, the first reconnects are
answered first. A lone lost connection is torn down in the next pass (one callback later than
before); what it sends meanwhile is dropped, as it would be once lost.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Lost connections torn down per event-loop pass: about a millisecond's work or two with TLS.
BATCH = 32


class _Teardowns:
    """One event loop's queue of teardowns, worked through a batch per pass."""

    __slots__ = ("_loop", "_queue", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: deque[Callable[[], None]] = deque()
        self._scheduled = False

    def add(self, teardown: Callable[[], None]) -> None:
        self._queue.append(teardown)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        queue = self._queue
        for _ in range(min(BATCH, len(queue))):
            teardown = queue.popleft()
            try:
                teardown()
            except Exception:
                log.exception("tearing down a lost dp connection")
        if queue:
            self._loop.call_soon(self._run)
        else:
            self._scheduled = False

    @property
    def pending(self) -> int:
        return len(self._queue)


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Teardowns] = (
    weakref.WeakKeyDictionary()
)


def _teardowns() -> _Teardowns:
    loop = asyncio.get_running_loop()
    teardowns = _by_loop.get(loop)
    if teardowns is None:
        teardowns = _by_loop[loop] = _Teardowns(loop)
    return teardowns


def tear_down_later(teardown: Callable[[], None]) -> None:
    """Run ``teardown`` (a lost connection's) in a later pass of the running loop, in order."""
    _teardowns().add(teardown)


def pending() -> int:
    """Teardowns waiting in the running loop."""
    return _teardowns().pending
