"""How one stream's watch waits: for a condition to hold, or for a poke.

Every connected proxy's send loop waits here once per change it is sent, so the wait is the
cheapest asyncio offers: one future per wait, resolved by whoever notices the condition may
hold (the engine marking a change, the stream's own receive loop with work for it). An
``anyio.Event`` per wait plus a cancel scope to interrupt it cost about a tenth of kuma-cp's
CPU in a 10,000-sidecar fan-out (benchmarks/RESULTS.md). Cancelling the waiting task (anyio's
cancel scopes do) ends the wait as with any future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Wakeup:
    """One waiter at a time; :meth:`notify` wakes it to check its condition again, :meth:`poke`
    wakes it unconditionally (once: a poke while nobody waits ends the next wait at once)."""

    __slots__ = ("_future", "_poked")

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None
        self._poked = False

    def notify(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def poke(self) -> None:
        self._poked = True
        self.notify()

    async def wait_until(self, ready: Callable[[], bool]) -> None:
        """Return once ``ready()`` is true or a poke came (since the last wait returned)."""
        while not (self._poked or ready()):
            self._future = future = asyncio.get_running_loop().create_future()
            try:
                await future
            finally:
                self._future = None
        self._poked = False

    async def wait_for_poke(self) -> None:
        """Return once a poke came (since the last wait returned)."""
        await self.wait_until(_never)


def _never() -> bool:
    return False


class Waitable:
    """The waiting side of a watch that marks its own changes (the engine's subscriptions, the
    Secret watches): a listener, the composite's one wake-up for all its members, and a
    :class:`Wakeup` made only if the watch is ever waited on alone (in a composite it never is,
    so a connected proxy holds none). A subclass says :attr:`has_changes` and calls
    :meth:`_changed` after each change."""

    __slots__ = ("_listener", "_wakeup")

    def __init__(self) -> None:
        self._listener: Callable[[], None] | None = None
        self._wakeup: Wakeup | None = None

    @property
    def has_changes(self) -> bool:
        raise NotImplementedError

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        self._listener = listener

    async def wait_for_changes(self) -> None:
        await self._own_wakeup().wait_until(self._ready)

    def poke(self) -> None:
        self._own_wakeup().poke()

    def _changed(self) -> None:
        """Wake whoever waits: the composite through its listener, or a direct wait."""
        if self._wakeup is not None:
            self._wakeup.notify()
        if self._listener is not None:
            self._listener()

    def _ready(self) -> bool:
        return self.has_changes

    def _own_wakeup(self) -> Wakeup:
        if self._wakeup is None:
            self._wakeup = Wakeup()
        return self._wakeup
