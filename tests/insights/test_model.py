"""Kuma's UpdateSubscription rules (last two kept, stale ones finalized), reads that lay live
subscriptions over stored ones, and the versions read from an Envoy node."""

from __future__ import annotations

import msgspec
from envoy.config.core.v3.base_pb2 import Node

from kuma.insights.model import (
    DataplaneInsight,
    DiscoverySubscription,
    MtlsInsight,
    insight_from_json,
    insight_json,
    merge_live,
    update_subscription,
)
from kuma.xds.server.node import node_version


def sub(
    id: str, connect: float, disconnect: float | None = None, instance: str = "cp"
) -> DiscoverySubscription:
    return DiscoverySubscription(
        id=id, control_plane_instance_id=instance, connect_time=connect, disconnect_time=disconnect
    )


def test_only_the_last_two_subscriptions_are_kept() -> None:
    insight = None
    for index in range(5):
        insight = update_subscription(insight, sub(f"s{index}", index, index + 0.5), now=100)
    assert insight is not None
    assert [s.id for s in insight.subscriptions] == ["s3", "s4"]


def test_the_same_subscription_is_replaced_in_place() -> None:
    insight = update_subscription(None, sub("a", 1, 2), now=10)
    insight = update_subscription(insight, sub("b", 3), now=10)
    insight = update_subscription(insight, sub("a", 1, 5), now=10)
    assert [(s.id, s.disconnect_time) for s in insight.subscriptions] == [("a", 5), ("b", None)]


def test_a_new_subscription_finalizes_older_ones_left_online() -> None:
    # An instance that died never wrote its disconnect time: the proxy must not stay online.
    insight = update_subscription(None, sub("stale", 1, instance="dead"), now=10)
    assert insight.online
    insight = update_subscription(insight, sub("new", 20, 30), now=40)
    assert [(s.id, s.disconnect_time) for s in insight.subscriptions] == [
        ("stale", 40),
        ("new", 30),
    ]
    assert not insight.online


def test_a_late_old_subscription_does_not_close_the_newer_ones() -> None:
    # Two instances share the store: the proxy left A (a1) for B, then B again; A notices the
    # half-open a1 late. The proxy stays online through b2.
    insight = update_subscription(None, sub("b1", 10, 20), now=20)
    insight = update_subscription(insight, sub("b2", 30), now=30)
    insight = update_subscription(insight, sub("a1", 1, 40), now=40)
    assert [(s.id, s.disconnect_time) for s in insight.subscriptions] == [
        ("b1", 20),
        ("b2", None),
    ]
    insight = update_subscription(insight, sub("a2", 15, 41), now=41)
    assert [s.id for s in insight.subscriptions] == ["a2", "b2"]
    assert insight.online


def test_a_storm_of_streams_never_evicts_the_live_subscription() -> None:
    """Issue 17, defect 1: extra streams with the proxy's node id open and close (a reconnect
    storm, or anyone on the network) while the proxy's own stream stays connected. Written in
    the flusher's order (each opened, then closed), the live one stays, and online."""
    insight = update_subscription(None, sub("live", 1), now=1)
    for index in range(2, 7):
        insight = update_subscription(insight, sub(f"extra{index}", index), now=index)
        insight = update_subscription(insight, sub(f"extra{index}", index, index + 0.5), now=index)
        assert "live" in [s.id for s in insight.subscriptions]
        assert insight.online
    assert len(insight.subscriptions) == 2  # Kuma's history length
    assert [s.id for s in insight.subscriptions] == ["live", "extra6"]
    # A read laying the live stream over a stored insight that lost it keeps it too.
    stored = DataplaneInsight((sub("extra5", 5, 5.5), sub("extra6", 6, 6.5)))
    merged = merge_live(stored, [sub("live", 1)])
    assert merged is not None
    assert [s.id for s in merged.subscriptions] == ["live", "extra6"]
    assert merged.online


def test_only_other_instances_online_subscriptions_are_finalized() -> None:
    # The writing instance closes its own subscriptions itself (it is alive: it is writing);
    # another instance's may be a dead one's, never closed.
    insight = update_subscription(None, sub("theirs", 1, instance="b"), now=1)
    insight = update_subscription(insight, sub("mine", 2, instance="a"), now=2)
    insight = update_subscription(insight, sub("mine2", 3, instance="a"), now=3)
    assert [(s.id, s.disconnect_time) for s in insight.subscriptions] == [
        ("mine", None),
        ("mine2", None),
    ]


def test_live_subscriptions_are_laid_over_the_stored_ones() -> None:
    stored = DataplaneInsight((sub("old", 1, 2), sub("mine", 3)))
    merged = merge_live(stored, [sub("mine", 3, 9), sub("newer", 10)])
    assert merged is not None
    assert [(s.id, s.disconnect_time) for s in merged.subscriptions] == [
        ("mine", 9),
        ("newer", None),
    ]
    assert merge_live(None, []) is None
    assert merge_live(stored, []) is stored


def test_versions_declared_by_kuma_dp_in_the_node_metadata() -> None:
    node = Node(id="default.web-1")
    node.metadata.update(
        {
            "version": {
                "kumaDp": {"version": "2.7.1", "gitTag": "v2.7.1", "gitCommit": "abc"},
                "envoy": {"version": "1.30.1", "build": "x/1.30.1/Clean/RELEASE/BoringSSL"},
            }
        }
    )
    assert node_version(node) == {
        "kumaDp": {"version": "2.7.1", "gitTag": "v2.7.1", "gitCommit": "abc", "buildDate": ""},
        "envoy": {"version": "1.30.1", "build": "x/1.30.1/Clean/RELEASE/BoringSSL"},
    }


def test_envoy_version_and_build_from_the_nodes_own_build_version() -> None:
    node = Node(id="default.web-1")
    version = node.user_agent_build_version
    version.version.major_number, version.version.minor_number, version.version.patch = 1, 40, 0
    version.metadata.update(
        {
            "revision.sha": "0123abcd",
            "revision.status": "Clean",
            "build.type": "RELEASE",
            "ssl.version": "BoringSSL",
        }
    )
    assert node_version(node)["envoy"] == {
        "version": "1.40.0",
        "build": "0123abcd/1.40.0/Clean/RELEASE/BoringSSL",
    }
    bare = Node(id="default.web-1", user_agent_version="custom")
    assert node_version(bare)["envoy"] == {"version": "custom", "build": ""}


def test_the_mtls_section_follows_kumas_update_cert() -> None:
    """Kuma's status sink: a new certificate (expiry, backends) replaces the section and counts
    one more regeneration; the same one changes nothing; a connected stream without one
    clears it; a closed stream leaves it."""
    first = MtlsInsight(1_000.0, 100.0, "ca-1", ("ca-1",))
    rotated = MtlsInsight(2_000.0, 900.0, "ca-1", ("ca-1",))

    def with_cert(s: DiscoverySubscription, cert: MtlsInsight | None) -> DiscoverySubscription:
        return msgspec.structs.replace(s, mtls=cert)

    insight = update_subscription(None, with_cert(sub("a", 1), first), now=10)
    assert insight.mtls == msgspec.structs.replace(first, certificate_regenerations=1)
    insight = update_subscription(insight, with_cert(sub("a", 1), first), now=20)
    assert insight.mtls is not None
    assert insight.mtls.certificate_regenerations == 1
    insight = update_subscription(insight, with_cert(sub("a", 1), rotated), now=30)
    assert insight.mtls == msgspec.structs.replace(rotated, certificate_regenerations=2)
    # Kept once per proxy: in the section, not also in the stored subscription.
    assert [s.mtls for s in insight.subscriptions] == [None]
    # Closed: its instance no longer knows the certificate; the last one stays.
    closed = update_subscription(insight, sub("a", 1, 40), now=40)
    assert closed.mtls == insight.mtls
    # A read lays the live stream's certificate over the stored section the same way.
    merged = merge_live(closed, [with_cert(sub("b", 50), first)])
    assert merged is not None
    assert merged.mtls == msgspec.structs.replace(first, certificate_regenerations=3)
    # Connected without a certificate (mTLS turned off): no section.
    assert update_subscription(insight, sub("b", 50), now=50).mtls is None

    document = insight_json(insight)
    assert document["mTLS"] == {
        "certificateExpirationTime": "1970-01-01T00:33:20.000000Z",
        "lastCertificateRegeneration": "1970-01-01T00:15:00.000000Z",
        "certificateRegenerations": 2,
        "issuedBackend": "ca-1",
        "supportedBackends": ["ca-1"],
    }
    # What a shared store and KDS carry: the section survives the round trip, and the same
    # certificate reported again (times finer than the stored microseconds) is no new one.
    assert insight_from_json(document).mtls == insight.mtls
    fine = MtlsInsight(1_000.123_456_789, 100.0, "ca-1", ("ca-1",))
    stored = insight_from_json(
        insight_json(update_subscription(None, with_cert(sub("c", 1), fine), now=1))
    )
    again = update_subscription(stored, with_cert(sub("c", 1), fine), now=2)
    assert again.mtls is not None
    assert again.mtls.certificate_regenerations == 1
    assert "mTLS" not in insight_json(DataplaneInsight((sub("a", 1),)))
