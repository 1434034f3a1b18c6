"""Helpers to read a watch with deadlines (no fixed sleeps)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio

from kuma.store import ResourceEvent, Synced, WatchItem


async def read_snapshot(
    events: AsyncIterator[WatchItem], within: float = 10.0
) -> tuple[list[ResourceEvent], Synced]:
    """Read the initial snapshot up to and including the Synced marker."""
    snapshot: list[ResourceEvent] = []
    with anyio.fail_after(within):
        async for item in events:
            if isinstance(item, Synced):
                return snapshot, item
            snapshot.append(item)
    raise AssertionError("watch ended before Synced")


async def read_events(
    events: AsyncIterator[WatchItem], count: int, within: float = 10.0
) -> list[ResourceEvent]:
    """Read exactly ``count`` change events; fails if a Synced marker or the end comes first."""
    got: list[ResourceEvent] = []
    with anyio.fail_after(within):
        while len(got) < count:
            item = await anext(events)
            assert isinstance(item, ResourceEvent), f"unexpected {item!r} after {len(got)} events"
            got.append(item)
    return got


async def assert_quiet(events: AsyncIterator[WatchItem], seconds: float = 0.3) -> None:
    """Nothing more arrives within ``seconds`` (used to prove there are no duplicates)."""
    with anyio.move_on_after(seconds):
        item = await anext(events)
        raise AssertionError(f"unexpected extra event {item!r}")
