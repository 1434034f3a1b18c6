"""Freezing kuma-cp's settled heap out of the cycle collector's young generations.

Generation 0 is collected once allocations minus deallocations reach 50,000 (``GC_THRESHOLDS``).
Changes that replace long-lived per-proxy objects (a new one young, the old one freed from an
older generation) keep that count flat while generation 0 grows, and a quiet control plane
allocates nothing: the objects made by convergence's tail and by the changes since wait there,
for tens of seconds, and the collection that finally comes, in the middle of some change, walks
67,000-97,000 of them cold: 25-44 ms of CPU at 2,000 proxies where 50,000 fresh ones take 7-20
(``kuma-load --cp-gc-log``, benchmarks/RESULTS.md). ``gc.freeze()`` moves every tracked object
to the permanent generation, which young and middle collections never walk, and restarts the
generations' counts.

Frozen objects are also skipped by full collections, so cyclic garbage among them (the state
of a proxy that disconnects later) would never be freed: at the start of each full collection
everything is unfrozen, so that collection sees the whole heap, as it would without freezing.
Full collections come when a fourth more objects are alive than at the last one, and freezing
makes them rarer still (it restarts the counts), so the freezer also runs one itself
at a quiet moment at most every ``FULL_INTERVAL`` seconds: frozen garbage lives at most that
long past the next quiet spell. At 10,000 proxies that is a pause of ~1-2.4 s an hour at the
earliest, at a quiet moment after activity; the garbage frozen meanwhile is small (what was
young at a freeze: 200-3,700 objects collected at 2,000 proxies), so an hour is cheap.

Except when many proxies have gone: a lost connection's state (its streams' cancelled tasks,
their tracebacks and frames, h2 and grpclib objects) is cyclic, and was frozen while the
proxy was connected. When every proxy reconnects at once, all of the old state is garbage
that only a full collection frees (~30 KB per proxy; kuma-load ``reconnect`` at 2,000: RSS
+67 MB after each storm, freezing or not, as CPython's own full collections wait for a fourth
more live objects). So ``departures`` (a count of lost connections, the dp server's) also
brings the full collection forward: at the first quiet moment once ``DEPARTED_FULL`` have
gone since the last one, at most every ``DEPARTED_INTERVAL`` seconds.

While busy (convergence, a mass reconnect), there is no quiet second to freeze in, and what
survives generation 0 waited for generation 1's collection, every 20th of generation 0's: one
walk of up to a million objects (0.46 s at 10,000 proxies converging, 0.84 s of collections in
all, ~4 % of convergence's CPU: benchmarks/RESULTS.md), each object walked a second time for
nothing, as almost all of it lives on. So the survivors of each generation-0 collection are
frozen at once (:data:`YOUNG_FREEZES` times at most between two full collections: cyclic
garbage among them waits for the next full collection, and past the bound generation 1 and
CPython's own full collections take over as without the freezer).

Quiet is judged by generation 0's count, and also by ``activity`` (connections made and lost,
the dp server's): a mass reconnect frees the old connections' state about as fast as it builds
the new, so the count can stay flat with no collection through a busy second, and a full
collection taken for a quiet moment's then lands at the storm's start (seen at 10,000: ~2.3 s
of the first 3, the first answer 1.2 → 3.7 s).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from typing import Any

import anyio

#: The process counts as quiet over a period in which generation 0's count (objects made
#: minus objects freed) moved by less than this: nothing is connecting or being rebuilt.
QUIET_ALLOCATIONS = 1_000
#: Seconds between two looks at generation 0's count.
PERIOD = 1.0
#: Seconds at least between two full collections the freezer runs (before a freeze).
FULL_INTERVAL = 3600.0
#: Generation-0 collections whose survivors are frozen at once, at most, between two full
#: collections (each freezes what at most ~50,000 allocations left: 200 cover the convergence
#: of ~30,000 proxies).
YOUNG_FREEZES = 200
#: Lost connections since the last full collection that bring the next one forward.
DEPARTED_FULL = 1_000
#: Seconds at least between two full collections brought forward by departures.
DEPARTED_INTERVAL = 60.0


def _young_collections() -> int:
    return int(gc.get_stats()[0]["collections"])


class SettledHeapFreezer:
    """Freezes the heap once per quiet spell that follows activity (after a full collection if
    the last one it ran is ``full_interval`` old); unfreezes it at the start of every full
    collection. :meth:`tick` is the look; :meth:`run` calls it every ``period``."""

    def __init__(
        self,
        quiet_allocations: int = QUIET_ALLOCATIONS,
        period: float = PERIOD,
        full_interval: float = FULL_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        departures: Callable[[], int] | None = None,
        departed_full: int = DEPARTED_FULL,
        departed_interval: float = DEPARTED_INTERVAL,
        activity: Callable[[], int] | None = None,
        young_freezes: int = YOUNG_FREEZES,
    ) -> None:
        self.quiet_allocations = quiet_allocations
        self.young_freezes = young_freezes
        #: Generation-0 collections whose survivors were frozen since the last full one.
        self.young_frozen = 0
        self.period = period
        self.full_interval = full_interval
        self.departed_full = departed_full
        self.departed_interval = departed_interval
        self._clock = clock
        self._departures = departures
        #: A count that grows with every connection made or lost: moved since the last look,
        #: the process is not quiet, whatever generation 0's count says.
        self._activity = activity
        self._last_activity = activity() if activity is not None else 0
        self._last_full = clock()
        #: When the freezer last ran a full collection itself (none yet: departures may bring
        #: the first at once).
        self._last_collected = -math.inf
        self._departed_at_full = departures() if departures is not None else 0
        self._last = gc.get_count()[0]
        self._young = _young_collections()
        #: Frozen since the last activity (nothing new worth freezing until there is more).
        self._frozen = True
        self.freezes = 0

    def install(self) -> None:
        gc.callbacks.append(self._on_collection)

    def uninstall(self) -> None:
        gc.callbacks.remove(self._on_collection)
        gc.unfreeze()

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        generation = info.get("generation")
        if phase == "start":
            if generation == 2:
                # Give the full collection every object: garbage among the frozen is freed
                # too. (The collection merges the younger generations into the oldest only
                # after this.)
                gc.unfreeze()
        elif generation == 2:
            self.young_frozen = 0
        elif generation == 0 and self.young_frozen < self.young_freezes:
            # The collection is over (its survivors moved to generation 1): nothing of the
            # collector's own lists is in use, and freezing is two list merges.
            self.young_frozen += 1
            gc.freeze()

    def tick(self) -> bool:
        """Freeze if the heap has been quiet since the last look after some activity; whether
        it froze."""
        count = gc.get_count()[0]
        young = _young_collections()
        # A generation-0 collection restarts the count: a busy second can end near where it
        # began (a mass reconnect at 10,000 was taken for quiet, and its full collection cost
        # ~4 s of the storm), so any collection since the last look is activity too.
        quiet = young == self._young and abs(count - self._last) < self.quiet_allocations
        self._last = count
        self._young = young
        if self._activity is not None:
            activity = self._activity()
            quiet = quiet and activity == self._last_activity
            self._last_activity = activity
        if not quiet:
            self._frozen = False
            return False
        if self._frozen:
            return False
        if self._full_due():
            gc.collect()  # unfreezes first (_on_collection): frees the garbage frozen so far
            self._last_full = self._last_collected = self._clock()
            if self._departures is not None:
                self._departed_at_full = self._departures()
        gc.freeze()
        # The freeze restarts the counts at 0: not a move to take for activity next time.
        self._last = gc.get_count()[0]
        self._young = _young_collections()
        self._frozen = True
        self.freezes += 1
        return True

    def _full_due(self) -> bool:
        now = self._clock()
        if now - self._last_full >= self.full_interval:
            return True
        if self._departures is None or now - self._last_collected < self.departed_interval:
            return False
        return self._departures() - self._departed_at_full >= self.departed_full

    async def run(self) -> None:
        self.install()
        try:
            while True:
                await anyio.sleep(self.period)
                self.tick()
        finally:
            self.uninstall()
