"""The GUI's live feed: change notices fanned out to every open page, coalesced per page.

Producers (the store's change events, the ADS streams' observer calls) call :meth:`publish`
synchronously; it never blocks and never awaits. Each open page (one server-sent-events
connection) has a :class:`FeedSubscriber` that keeps what it has not sent yet *keyed by what
changed*, so a thousand responses to one proxy are one notice, and its backlog is bounded by the
number of distinct things that can change. Past :data:`MAX_PENDING` distinct notices the backlog
collapses into one ``resync`` notice (the page reloads what it shows): a mass reconnection of
10,000 sidecars costs each page one message, not 10,000.

Nothing here runs on a timer: a subscriber sleeps until a notice arrives, then waits
:data:`GATHER` seconds so that a burst leaves as one message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio

#: Distinct pending notices per page before they collapse into one ``resync``.
MAX_PENDING = 500
#: After the first notice of a burst, how long to gather more before sending (seconds).
GATHER = 0.1

Notice = dict[str, Any]
RESYNC: Notice = {"kind": "resync"}


def _identity(notice: Notice) -> tuple[Any, ...]:
    # What a notice is about; a later notice about the same thing replaces the earlier one.
    return (notice.get("kind"), notice.get("type"), notice.get("mesh"), notice.get("name"))


class FeedSubscriber:
    """One page's pending notices."""

    def __init__(self, max_pending: int) -> None:
        self._max_pending = max_pending
        self._pending: dict[tuple[Any, ...], Notice] = {}
        self._overflow = False
        self._arrived = anyio.Event()
        self.closed = False

    def offer(self, notice: Notice) -> None:
        if self.closed:
            return
        if not self._overflow:
            self._pending[_identity(notice)] = notice
            if len(self._pending) > self._max_pending:
                self._overflow = True
                self._pending.clear()
        self._arrived.set()

    def close(self) -> None:
        self.closed = True
        self._arrived.set()

    async def next_batch(self, gather: float = GATHER) -> list[Notice]:
        """The notices of the next burst (waits for one); ``[]`` once closed."""
        await self._arrived.wait()
        if gather > 0 and not self.closed:
            await anyio.sleep(gather)
        self._arrived = anyio.Event()
        if self.closed:
            return []
        if self._overflow:
            self._overflow = False
            self._pending.clear()
            return [RESYNC]
        batch = list(self._pending.values())
        self._pending.clear()
        return batch


class LiveFeed:
    def __init__(self, *, max_pending: int = MAX_PENDING) -> None:
        self._max_pending = max_pending
        self._subscribers: set[FeedSubscriber] = set()
        self.closed = False
        #: Notices published since start (for tests and the overview's footer).
        self.published = 0

    def publish(self, notice: Notice) -> None:
        self.published += 1
        for subscriber in self._subscribers:
            subscriber.offer(notice)

    @contextmanager
    def subscribe(self) -> Iterator[FeedSubscriber]:
        subscriber = FeedSubscriber(self._max_pending)
        if self.closed:
            subscriber.close()
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """End every open page's stream (kuma-cp is stopping)."""
        self.closed = True
        for subscriber in self._subscribers:
            subscriber.close()
