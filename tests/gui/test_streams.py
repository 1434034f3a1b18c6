"""What the GUI hears from the ADS streams: online/offline, insight changes, NACK texts."""

from __future__ import annotations

import pytest

from kuma.gui.feed import LiveFeed
from kuma.gui.streams import MAX_ERROR_TEXT, NACKS_KEPT, StreamWatcher
from kuma.xds.types import CLUSTER, LISTENER

pytestmark = pytest.mark.anyio


async def test_streams_become_online_offline_and_insight_notices() -> None:
    feed = LiveFeed()
    watcher = StreamWatcher(feed, clock=lambda: 1000.0)
    with feed.subscribe() as page:
        watcher.on_stream_open(1, "default.web-01", "delta", "1.32.0")
        # A reconnecting Envoy opens its new stream before the old one is seen closed.
        watcher.on_stream_open(2, "default.web-01", "delta", "1.32.0")
        watcher.on_stream_close(1, "default.web-01")
        watcher.on_response("default.web-01", CLUSTER, 3, "n1")
        watcher.on_ack("default.web-01", CLUSTER, "n1")
        assert await page.next_batch(gather=0) == [
            {"kind": "proxy", "mesh": "default", "name": "web-01", "online": True},
            {"kind": "insight", "mesh": "default", "name": "web-01"},
        ]
        watcher.on_stream_close(2, "default.web-01")
        assert await page.next_batch(gather=0) == [
            {"kind": "proxy", "mesh": "default", "name": "web-01", "online": False}
        ]


def test_nack_texts_are_kept_newest_first_bounded_and_forgotten() -> None:
    watcher = StreamWatcher(LiveFeed(), clock=lambda: 1234.5)
    for index in range(NACKS_KEPT + 2):
        watcher.on_nack("default.web-01", LISTENER, f"n{index}", f"error {index}")
    watcher.on_nack("default.web-01", CLUSTER, "big", "x" * (MAX_ERROR_TEXT + 10))
    nacks = watcher.nacks("default", "web-01")
    assert len(nacks) == NACKS_KEPT
    assert nacks[0] == {
        "time": 1234.5,
        "type": "cds",
        "nonce": "big",
        "error": "x" * MAX_ERROR_TEXT,
    }
    assert nacks[1]["error"] == f"error {NACKS_KEPT + 1}"
    assert nacks[1]["type"] == "lds"
    assert watcher.nacks("default", "other") == []
    watcher.forget("default", "web-01")
    assert watcher.nacks("default", "web-01") == []
