"""A clock and a sleep the tests move by hand: time-based rules are tested without sleeping."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Record the wait and move the clock past it (no real time passes)."""
        self.slept.append(seconds)
        self.now += seconds
