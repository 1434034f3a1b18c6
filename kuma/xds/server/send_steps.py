"""Send steps: the sessions whose parked send loop has a change to send, run together in one
callback at the end of the loop turn they became due in, instead of one task wake-up each
(kuma/xds/server/session.py says what a step does and when it hands over to the task).
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Steppable(Protocol):
    def step(self) -> None:
        """Do what the woken send loop would do; never raise (hand over to the task)."""
        ...


class SendSteps:
    """The sessions whose send step is due, run together at the end of this loop turn: one
    callback for a fan-out's thousands of steps, not a task wake-up each."""

    __slots__ = ("_due", "_loop")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due: list[Steppable] | None = None

    def add(self, session: Steppable) -> None:
        loop = asyncio.get_running_loop()
        due = self._due
        # A new list per turn, and per event loop (a loop closed with a callback pending leaves
        # its list behind, never run).
        if due is None or self._loop is not loop:
            due = []
            self._loop, self._due = loop, due
            loop.call_soon(self._run, due)
        due.append(session)

    def _run(self, due: list[Steppable]) -> None:
        if self._due is due:
            self._due = None
        for session in due:
            session.step()


#: The one queue of send steps: every session of the process adds to it.
STEPS = SendSteps()
