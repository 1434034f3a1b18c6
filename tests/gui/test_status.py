"""Online or not: this instance's streams exactly, other instances' as last flushed."""

from __future__ import annotations

import pytest

from kuma.gui.feed import LiveFeed
from kuma.gui.status import ProxyStatus
from kuma.gui.streams import StreamWatcher
from kuma.insights import DiscoverySubscription, Insights, MemoryInsightStore

pytestmark = pytest.mark.anyio


def subscription(sid: str, instance: str, *, closed: bool = False) -> DiscoverySubscription:
    return DiscoverySubscription(
        id=sid,
        control_plane_instance_id=instance,
        connect_time=100.0,
        disconnect_time=200.0 if closed else None,
    )


async def test_streams_here_are_exact_and_other_instances_count_as_stored() -> None:
    insights = Insights(MemoryInsightStore(), flush_interval=10.0, instance_id="here")
    streams = StreamWatcher(LiveFeed())
    status = ProxyStatus(insights, streams)
    assert not status.online("default", "a")

    streams.on_stream_open(1, "default.a", "delta", "")
    assert status.online("default", "a")
    # Flushed as open, then closed here before the next flush: offline, whatever is stored.
    await insights.store.upsert([("default", "a", subscription("s1", "here"))])
    streams.on_stream_close(1, "default.a")
    assert not status.online("default", "a")

    # Connected to another instance (as that instance last flushed it).
    await insights.store.upsert([("default", "b", subscription("s2", "elsewhere"))])
    assert status.online("default", "b")
    await insights.store.upsert([("default", "b", subscription("s2", "elsewhere", closed=True))])
    assert not status.online("default", "b")
    assert status.insight("default", "b") == insights.insight("default", "b")
