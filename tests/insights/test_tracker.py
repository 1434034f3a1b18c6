"""The live half of DataplaneInsight: exact counters from a scripted stream, online/offline,
attribution between overlapping streams, and Kuma's JSON shape."""

from __future__ import annotations

from typing import Any

from kuma.insights import InsightTracker, insight_json, is_online
from kuma.insights.model import DataplaneInsight, timestamp
from kuma.xds.generate.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from kuma.xds.server.observer import StreamObserver, VersionObserver

from .clocks import FakeClock

NODE = "default.web-1"


def tracker(clock: FakeClock) -> InsightTracker:
    return InsightTracker("cp-1", clock=clock)


def json_of(t: InsightTracker, node_id: str = NODE) -> dict[str, Any]:
    return insight_json(DataplaneInsight(tuple(t.live(node_id))))


def script(t: InsightTracker, clock: FakeClock) -> None:
    """Open, five responses, four ACKs and a NACK, as an Envoy would answer them."""
    t.on_stream_open(1, NODE, "delta", "1.40.0")
    for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE, CLUSTER):
        clock.advance(1)
        t.on_response(NODE, type_url, 1, "n")
    clock.advance(1)
    t.on_ack(NODE, CLUSTER, "1")
    t.on_ack(NODE, ENDPOINT, "2")
    t.on_nack(NODE, LISTENER, "3", "bad listener")
    t.on_ack(NODE, ROUTE, "4")
    t.on_ack(NODE, CLUSTER, "5")


def test_a_scripted_stream_is_counted_exactly_in_kumas_json() -> None:
    clock = FakeClock()
    connected = clock.now
    t = tracker(clock)
    script(t, clock)
    [subscription] = json_of(t)["subscriptions"]
    assert subscription["controlPlaneInstanceId"] == "cp-1"
    assert subscription["connectTime"] == timestamp(connected)
    assert "disconnectTime" not in subscription
    assert subscription["status"] == {
        "lastUpdateTime": timestamp(connected + 6),
        "total": {"responsesSent": "5", "responsesAcknowledged": "4", "responsesRejected": "1"},
        "cds": {"responsesSent": "2", "responsesAcknowledged": "2"},
        "eds": {"responsesSent": "1", "responsesAcknowledged": "1"},
        "lds": {"responsesSent": "1", "responsesRejected": "1"},
        "rds": {"responsesSent": "1", "responsesAcknowledged": "1"},
    }
    assert subscription["version"] == {"envoy": {"version": "1.40.0"}}


def test_timestamps_are_rfc3339_utc_with_microseconds() -> None:
    assert timestamp(1571925896.82035) == "2019-10-24T14:04:56.820350Z"


def test_types_without_their_own_stats_count_in_the_total_only() -> None:
    clock = FakeClock()
    t = tracker(clock)
    t.on_stream_open(1, NODE, "sotw", "")
    t.on_response(NODE, SECRET, 1, "1")
    status = json_of(t)["subscriptions"][0]["status"]
    assert status["total"] == {"responsesSent": "1"}
    assert all(status[k] == {} for k in ("cds", "eds", "lds", "rds"))
    assert "version" not in json_of(t)["subscriptions"][0]


def test_online_until_the_stream_closes_then_offline() -> None:
    clock = FakeClock()
    t = tracker(clock)
    t.on_stream_open(1, NODE, "delta", "1.40.0")
    assert is_online(json_of(t))
    clock.advance(30)
    t.on_stream_close(1, NODE)
    [subscription] = json_of(t)["subscriptions"]
    assert subscription["disconnectTime"] == timestamp(clock.now)
    assert not is_online(json_of(t))
    # Closed is final: a late report for the node changes nothing.
    t.on_response(NODE, CLUSTER, 1, "9")
    assert json_of(t)["subscriptions"][0]["status"]["total"] == {}


def test_a_closed_stream_is_kept_until_its_final_state_is_flushed() -> None:
    clock = FakeClock()
    t = tracker(clock)
    t.on_stream_open(1, NODE, "delta", "")
    t.on_stream_close(1, NODE)
    assert t.has_closed
    [taken] = t.take_dirty()
    final = taken.snapshot()
    assert taken.node_id == NODE
    assert final.disconnect_time == clock.now
    assert t.tracks(NODE)  # still readable while the write is in flight
    t.forget({final.id})
    assert not t.tracks(NODE)
    assert t.tracked_streams == 0
    assert t.open_streams == 0


def test_reports_go_to_the_newest_open_stream_of_the_proxy() -> None:
    t = tracker(FakeClock())
    t.on_stream_open(1, NODE, "delta", "")
    t.on_stream_open(2, NODE, "delta", "")  # reconnected before the old stream was seen closed
    t.on_response(NODE, CLUSTER, 1, "1")
    old, new = t.live(NODE)
    assert (old.status.total.responses_sent, new.status.total.responses_sent) == (0, 1)
    t.on_stream_close(2, NODE)
    t.on_response(NODE, CLUSTER, 1, "2")
    old, new = t.live(NODE)
    assert (old.status.total.responses_sent, new.status.total.responses_sent) == (1, 1)


def test_reports_for_unknown_nodes_and_streams_are_ignored() -> None:
    t = tracker(FakeClock())
    t.on_response("default.nobody", CLUSTER, 1, "1")
    t.on_ack("default.nobody", CLUSTER, "1")
    t.on_nack("default.nobody", CLUSTER, "1", "x")
    t.on_stream_close(99, "default.nobody")
    t.on_stream_version(99, {})
    assert t.take_dirty() == []


def test_dirty_only_after_a_change_and_closed_only_leaves_open_streams_due() -> None:
    t = tracker(FakeClock())
    t.on_stream_open(1, NODE, "delta", "")
    t.on_stream_open(2, "default.web-2", "delta", "")
    assert [s.node_id for s in t.take_dirty()] == [NODE, "default.web-2"]
    assert t.take_dirty() == []
    t.on_ack(NODE, CLUSTER, "1")
    t.on_stream_close(2, "default.web-2")
    assert [s.node_id for s in t.take_dirty(closed_only=True)] == ["default.web-2"]
    assert not t.has_closed
    assert [s.node_id for s in t.take_dirty()] == [NODE]


def test_versions_from_the_node_replace_the_bare_envoy_version() -> None:
    t = tracker(FakeClock())
    t.on_stream_open(1, NODE, "delta", "1.40.0")
    t.on_stream_version(
        1,
        {
            "kumaDp": {"version": "2.7.0", "gitTag": "", "gitCommit": "abc", "buildDate": ""},
            "envoy": {"version": "1.40.0", "build": "sha/1.40.0/Clean/RELEASE/BoringSSL"},
        },
    )
    assert json_of(t)["subscriptions"][0]["version"] == {
        "kumaDp": {"version": "2.7.0", "gitCommit": "abc"},
        "envoy": {"version": "1.40.0", "build": "sha/1.40.0/Clean/RELEASE/BoringSSL"},
    }


def test_streams_of_one_build_share_one_version() -> None:
    t = tracker(FakeClock())
    build = {"envoy": {"version": "1.40.0", "build": "b"}, "kumaDp": {"version": "2.7.0"}}
    for stream_id in (1, 2):
        t.on_stream_open(stream_id, f"default.web-{stream_id}", "delta", "1.40.0")
        t.on_stream_version(stream_id, {part: dict(fields) for part, fields in build.items()})
    t.on_stream_open(3, "default.web-3", "delta", "1.40.0")
    t.on_stream_version(3, {"envoy": {"version": "1.41.0", "build": "b"}})
    first, second, other = (s.version for s in t.take_dirty())
    assert first == second == build
    assert first is second
    assert other == {"envoy": {"version": "1.41.0", "build": "b"}}


def test_the_tracker_is_a_stream_observer_with_the_version_hook() -> None:
    observer: StreamObserver = tracker(FakeClock())  # checked by mypy
    assert isinstance(observer, VersionObserver)
