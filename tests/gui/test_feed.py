"""The live feed: notices fan out to every page, coalesce per thing, collapse when too many."""

from __future__ import annotations

import anyio
import pytest

from kuma.gui.feed import RESYNC, LiveFeed

pytestmark = pytest.mark.anyio


async def test_notices_reach_every_page_and_coalesce_per_thing() -> None:
    feed = LiveFeed()
    with feed.subscribe() as first, feed.subscribe() as second:
        assert feed.subscribers == 2
        for _ in range(100):
            feed.publish({"kind": "insight", "mesh": "default", "name": "web-01"})
        feed.publish({"kind": "proxy", "mesh": "default", "name": "web-01", "online": True})
        feed.publish({"kind": "proxy", "mesh": "default", "name": "web-01", "online": False})
        for page in (first, second):
            batch = await page.next_batch(gather=0)
            assert batch == [
                {"kind": "insight", "mesh": "default", "name": "web-01"},
                # The latest word about the same proxy wins.
                {"kind": "proxy", "mesh": "default", "name": "web-01", "online": False},
            ]
    assert feed.subscribers == 0


async def test_a_flood_collapses_into_one_resync() -> None:
    feed = LiveFeed(max_pending=10)
    with feed.subscribe() as page:
        for index in range(11):
            feed.publish({"kind": "proxy", "mesh": "m", "name": f"dp-{index}", "online": True})
        assert await page.next_batch(gather=0) == [RESYNC]
        feed.publish({"kind": "problems"})
        assert await page.next_batch(gather=0) == [{"kind": "problems"}]


async def test_a_page_waits_for_notices_and_ends_when_the_feed_closes() -> None:
    feed = LiveFeed()
    with feed.subscribe() as page:
        with anyio.move_on_after(0.05) as waited:
            await page.next_batch(gather=0)
        assert waited.cancelled_caught, "nothing was published: the page must keep waiting"
        feed.close()
        assert await page.next_batch() == []
    with feed.subscribe() as late:
        assert await late.next_batch() == []
