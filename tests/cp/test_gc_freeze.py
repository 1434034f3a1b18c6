"""kuma-cp's settled-heap freezer (``kuma.cp.gc_freeze``): it freezes the heap once per quiet
spell after activity, and cyclic garbage made among frozen objects is still freed by the next
full collection."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from kuma.cp.gc_freeze import SettledHeapFreezer


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def freezer() -> Iterator[SettledHeapFreezer]:
    made = SettledHeapFreezer(quiet_allocations=1_000_000, clock=_Clock())
    made.install()
    try:
        yield made
    finally:
        made.uninstall()


def _active(freezer: SettledHeapFreezer) -> None:
    # What tick saw last differs from now by more than the quiet bound: activity.
    freezer._last = gc.get_count()[0] + 2 * freezer.quiet_allocations


def _frozen_garbage_cycle(freezer: SettledHeapFreezer) -> weakref.ref[_Node]:
    """A reference cycle frozen while alive, then dropped: cyclic garbage among the frozen."""
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    dead = weakref.ref(first)
    _active(freezer)
    freezer.tick()
    assert freezer.tick()
    return dead


def test_freezes_once_per_quiet_spell_after_activity(freezer: SettledHeapFreezer) -> None:
    assert not freezer.tick()  # nothing happened since start-up: nothing to freeze
    _active(freezer)
    assert not freezer.tick()  # still busy
    assert freezer.tick()  # quiet now
    assert gc.get_freeze_count() > 0
    assert not freezer.tick()  # already frozen, no new activity
    assert freezer.freezes == 1


def test_the_freeze_restarting_the_count_is_not_taken_for_activity() -> None:
    enabled = gc.isenabled()
    gc.disable()  # the counts move only with this test's objects
    made = SettledHeapFreezer(quiet_allocations=1_000, clock=_Clock())
    made.install()
    try:
        kept = [[k] for k in range(5_000)]  # activity: the count moves by ~5,000
        assert not made.tick()
        assert made.tick()  # quiet: frozen, and the count restarts at 0
        assert not made.tick()
        assert not made.tick()
        assert made.freezes == 1
        assert len(kept) == 5_000
    finally:
        made.uninstall()
        if enabled:
            gc.enable()


def test_garbage_made_after_a_freeze_is_collected_by_the_next_full_collection(
    freezer: SettledHeapFreezer,
) -> None:
    dead = _frozen_garbage_cycle(freezer)
    gc.collect(1)
    assert dead() is not None  # young and middle collections do not see frozen objects
    gc.collect()
    assert dead() is None


def test_garbage_frozen_is_freed_at_a_quiet_spell_once_the_full_interval_passed(
    freezer: SettledHeapFreezer,
) -> None:
    dead = _frozen_garbage_cycle(freezer)
    _active(freezer)
    freezer.tick()
    assert freezer.tick()  # a quiet spell before the interval passed: frozen again, not freed
    assert dead() is not None
    assert isinstance(freezer._clock, _Clock)
    freezer._clock.now += freezer.full_interval
    _active(freezer)
    freezer.tick()
    assert freezer.tick()
    assert dead() is None


def test_garbage_frozen_is_freed_at_a_quiet_spell_once_many_connections_went() -> None:
    """A mass reconnect leaves the old connections' state as cyclic garbage among the frozen:
    once ``departed_full`` connections went, the next quiet spell collects it (at most every
    ``departed_interval``), without waiting for the hourly full collection."""
    clock, gone = _Clock(), [0]
    made = SettledHeapFreezer(
        quiet_allocations=1_000_000,
        clock=clock,
        departures=lambda: gone[0],
        departed_full=100,
        departed_interval=60.0,
    )

    def quiet_spell() -> None:
        _active(made)
        made.tick()
        assert made.tick()

    made.install()
    try:
        dead = _frozen_garbage_cycle(made)
        clock.now = 10.0
        gone[0] = 99  # fewer than departed_full: frozen again, not freed
        quiet_spell()
        assert dead() is not None
        gone[0] = 100  # the first may come at once (a mass reconnect soon after a start)
        quiet_spell()
        assert dead() is None
        dead = _frozen_garbage_cycle(made)
        gone[0] = 250
        clock.now = 69.0  # enough gone, but the last full collection is too recent
        quiet_spell()
        assert dead() is not None
        clock.now = 70.0
        quiet_spell()
        assert dead() is None
        # Counted from that collection on: the same departures do not bring another.
        dead = _frozen_garbage_cycle(made)
        clock.now = 240.0
        quiet_spell()
        assert dead() is not None
    finally:
        made.uninstall()


def test_a_young_collection_since_the_last_look_is_activity(freezer: SettledHeapFreezer) -> None:
    """The count restarts at every generation-0 collection, so a busy second can end near its
    start: a collection since the last look is activity, whatever the count says."""
    _active(freezer)
    freezer.tick()
    assert freezer.tick()  # quiet: frozen
    _active(freezer)
    freezer.tick()
    freezer._last = gc.get_count()[0]  # the count back where it was ...
    gc.collect(0)  # ... after a young collection
    freezer._last = gc.get_count()[0]
    assert not freezer.tick()
    assert freezer.tick()


def test_connections_made_or_lost_since_the_last_look_are_activity() -> None:
    """A mass reconnect frees the old connections' state about as fast as it builds the new:
    generation 0's count can stay flat with no collection through a busy second. Connections
    made or lost since the last look are activity, so no full collection lands in the storm."""
    clock, gone, events = _Clock(), [0], [0]
    made = SettledHeapFreezer(
        quiet_allocations=1_000_000,
        clock=clock,
        departures=lambda: gone[0],
        departed_full=100,
        activity=lambda: events[0],
    )
    made.install()
    try:
        _active(made)
        made.tick()
        assert made.tick()  # quiet after start-up's activity: frozen
        gone[0] = events[0] = 5_000  # the storm: the count flat, connections coming and going
        collections = gc.get_stats()[2]["collections"]
        assert not made.tick()
        events[0] = 9_000
        assert not made.tick()
        assert gc.get_stats()[2]["collections"] == collections  # no full collection mid-storm
        assert made.tick()  # the storm is over: quiet, and the departures' collection runs
        assert gc.get_stats()[2]["collections"] == collections + 1
    finally:
        made.uninstall()


def _in_generation_1(thing: object) -> bool:
    return any(o is thing for o in gc.get_objects(generation=1))


def test_survivors_of_young_collections_are_frozen_until_the_bound() -> None:
    made = SettledHeapFreezer(quiet_allocations=1_000_000, clock=_Clock(), young_freezes=2)
    made.install()
    try:
        survivors = []
        for _ in range(2):
            survivor = _Node()
            survivors.append(survivor)
            gc.collect(0)
            # Frozen at once: generation 1's collection will not walk it again.
            assert not _in_generation_1(survivor)
        assert made.young_frozen == 2
        beyond = _Node()
        gc.collect(0)
        assert _in_generation_1(beyond)  # past the bound: as without the freezer
        # A full collection restarts the bound (and sees the frozen ones: unfrozen first).
        gc.collect()
        assert made.young_frozen == 0
        again = _Node()
        gc.collect(0)
        assert not _in_generation_1(again)
    finally:
        made.uninstall()


def test_cyclic_garbage_frozen_with_young_survivors_is_freed_by_the_next_full_collection() -> None:
    made = SettledHeapFreezer(quiet_allocations=1_000_000, clock=_Clock())
    made.install()
    try:
        first, second = _Node(), _Node()
        first.other, second.other = second, first
        dead = weakref.ref(first)
        gc.collect(0)  # alive: survives, frozen
        del first, second
        gc.collect(1)  # a middle collection does not see the frozen
        assert dead() is not None
        gc.collect()
        assert dead() is None
    finally:
        made.uninstall()
