""":mod:`kuma.xds.server.compact`: a deque's interface in a list's footprint, and asyncio's
Event and Queue working on it. A served stream holding no deque is checked with the idle
stream's memory (test_server_idle_streams.py); every other server test runs through the swap.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import anyio
import pytest

from kuma.xds.server.compact import BoundOnLookup, SmallDeque, compact_stream

pytestmark = pytest.mark.anyio


def test_small_deque_pops_and_pushes_at_both_ends_as_a_deque_does() -> None:
    small, real = SmallDeque([1, 2]), deque([1, 2])
    for d in (small, real):
        d.appendleft(0)
        d.append(3)
    assert list(small) == list(real) == [0, 1, 2, 3]
    assert [small.popleft(), small.pop()] == [real.popleft(), real.pop()] == [0, 3]
    small.clear()
    with pytest.raises(IndexError):
        small.popleft()


async def test_events_and_queues_work_after_the_swap() -> None:
    event, queue = asyncio.Event(), asyncio.Queue[int]()
    stream = _fake_stream(event, queue)
    compact_stream(stream)
    swapped: Any = (event, queue)
    assert type(swapped[0]._waiters) is type(swapped[1]._getters) is SmallDeque
    async with anyio.create_task_group() as tg:
        got: list[int] = []

        async def get() -> None:
            got.append(await queue.get())
            await event.wait()

        tg.start_soon(get)
        await anyio.wait_all_tasks_blocked()
        queue.put_nowait(7)
        await anyio.wait_all_tasks_blocked()
        event.set()
    assert got == [7]
    assert queue.empty()


def _fake_stream(event: asyncio.Event, queue: asyncio.Queue[int]) -> Any:
    class Buffer:
        _unacked = queue
        _acked: deque[int] = deque()

    class Inner:
        window_updated = event
        buffer = Buffer()
        connection = None

    class Stream:
        _stream = Inner()

    return Stream()


def test_a_shared_dispatch_table_binds_to_its_owner_on_lookup() -> None:
    class Owner:
        def __init__(self, name: str) -> None:
            self.name = name

        def handle(self, x: int) -> str:
            return f"{self.name}:{x}"

    a, b = Owner("a"), Owner("b")
    functions: dict[Any, Any] = {int: Owner.handle}
    table_a, table_b = BoundOnLookup(a, functions), BoundOnLookup(b, functions)
    assert (table_a[int](1), table_b[int](2)) == ("a:1", "b:2")
    with pytest.raises(KeyError):
        table_a[str]
