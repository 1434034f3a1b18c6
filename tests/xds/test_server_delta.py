"""Delta ADS over grpclib's in-memory channel, against a ConfigSource the tests drive.

Every response is checked by the client for the stream-wide rules (unique nonces, no name twice
in a response, packed types matching the response). "Nothing more is sent" is checked with a
marker: a listener added now must be the very next response, and anything the server still
meant to send for clusters or endpoints would come before it.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import anyio
import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from kuma.xds.generate.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from kuma.xds.proxy_metadata import ProxyMetadata
from kuma.xds.server.service import DELTA_METHOD

from .fakes import (
    DEADLINE,
    NODE,
    DeltaClient,
    FakeProxy,
    FakeSource,
    RecordingObserver,
    ads_channel,
    delta_state,
    delta_stream,
    resource,
)

pytestmark = pytest.mark.anyio

_markers = itertools.count()


async def assert_quiet(client: DeltaClient, proxy: FakeProxy) -> None:
    """Nothing is pending for CDS, EDS or LDS: a listener added now is the next response."""
    marker = f"marker-{next(_markers)}"
    proxy.put(LISTENER, marker)
    response = await client.recv()
    assert (response.type_url, delta_state(response)) == (
        LISTENER,
        {marker: resource(LISTENER, marker).version},
    )
    await client.ack(response)


async def processed(observer: RecordingObserver, nonce: str) -> None:
    """Wait until the server has handled the request that answered ``nonce``."""
    await observer.wait_for(lambda event: event[0] in ("ack", "nack") and event[3] == nonce)


def version(type_url: str, name: str, rev: int = 0) -> str:
    return resource(type_url, name, rev).version


async def start(client: DeltaClient, *types: str) -> list[Any]:
    """Subscribe to the wildcard of each type, return (and ACK) the first responses."""
    responses = []
    for type_url in types:
        await client.send(type_url)
        response = await client.recv()
        assert response.type_url == type_url
        await client.ack(response)
        responses.append(response)
    return responses


async def test_initial_wildcard_cds_and_lds() -> None:
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(CLUSTER, "b")
    proxy.put(CLUSTER, "a")
    proxy.put(LISTENER, "l")
    proxy.put(ENDPOINT, "a")  # not wildcard: never sent unless subscribed
    async with ads_channel(source, observer) as channel, delta_stream(channel) as client:
        cds, lds = await start(client, CLUSTER, LISTENER)
        assert [r.name for r in cds.resources] == ["a", "b"]
        assert delta_state(cds) == {"a": version(CLUSTER, "a"), "b": version(CLUSTER, "b")}
        assert delta_state(lds) == {"l": version(LISTENER, "l")}
        assert cds.resources[0].resource.value == resource(CLUSTER, "a").body
        await processed(observer, lds.nonce)
        await assert_quiet(client, proxy)
        await client.close()
    assert observer.of_kind("open") == [("open", 1, NODE, "delta", "1.40.0")]
    assert observer.of_kind("close") == [("close", 1, NODE)]
    assert ("ack", NODE, CLUSTER, cds.nonce) in observer.events
    assert ("response", NODE, CLUSTER, 2, cds.nonce) in observer.events


async def test_first_wildcard_request_is_answered_even_when_empty() -> None:
    source = FakeSource()
    source.proxy()
    async with ads_channel(source) as channel, delta_stream(channel) as client:
        for type_url in (CLUSTER, LISTENER):
            await client.send(type_url)
            response = await client.recv()
            assert response.type_url == type_url
            assert delta_state(response) == {}


async def test_first_request_without_names_is_not_a_wildcard_for_endpoints() -> None:
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(ENDPOINT, "a")
    async with ads_channel(source, observer) as channel, delta_stream(channel) as client:
        await client.send(LISTENER)
        lds = await client.recv()
        await client.send(ENDPOINT)
        await client.ack(lds)  # handled after the EDS request: something to wait for
        await processed(observer, lds.nonce)
        proxy.put(ENDPOINT, "a", rev=1)
        await assert_quiet(client, proxy)


async def test_explicit_wildcard_beside_names() -> None:
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(LISTENER, "x")
    proxy.put(LISTENER, "y")
    async with ads_channel(source) as channel, delta_stream(channel) as client:
        await client.send(LISTENER, ["x", "*"])
        response = await client.recv()
        assert set(delta_state(response)) == {"x", "y"}
        await client.ack(response)
        proxy.put(LISTENER, "z")
        assert set(delta_state(await client.recv())) == {"z"}


async def test_endpoints_subscribed_before_they_exist_are_sent_when_they_appear() -> None:
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(ENDPOINT, "a")
    async with ads_channel(source) as channel, delta_stream(channel) as client:
        await start(client, LISTENER)
        await client.send(ENDPOINT, ["a", "b"])
        response = await client.recv()
        assert delta_state(response) == {"a": version(ENDPOINT, "a")}
        await client.ack(response)
        proxy.put(ENDPOINT, "b")
        proxy.put(ENDPOINT, "c")  # not subscribed
        response = await client.recv()
        assert delta_state(response) == {"b": version(ENDPOINT, "b")}


async def test_unchanged_content_is_never_resent() -> None:
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    async with ads_channel(source, observer) as channel, delta_stream(channel) as client:
        await start(client, CLUSTER, LISTENER)
        proxy.put(CLUSTER, "a")  # same content: a change notice, same version
        proxy.put(CLUSTER, "b")
        response = await client.recv()
        assert delta_state(response) == {"b": version(CLUSTER, "b")}
        await client.ack(response)
        await assert_quiet(client, proxy)


async def test_unsubscribe_forgets_and_resubscribe_sends_again() -> None:
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(ENDPOINT, "a")
    async with ads_channel(source, observer) as channel, delta_stream(channel) as client:
        await start(client, LISTENER)
        await client.send(ENDPOINT, ["a"])
        sent = await client.recv()
        # The unsubscribe rides on the ACK, so the observer tells when it was handled.
        await client.send(ENDPOINT, unsubscribe=["a"], nonce=sent.nonce)
        await processed(observer, sent.nonce)
        proxy.put(ENDPOINT, "a", rev=1)
        proxy.remove(ENDPOINT, "a")  # no removal either: the client no longer holds it
        await assert_quiet(client, proxy)
        proxy.put(ENDPOINT, "a")
        await assert_quiet(client, proxy)
        # Same content as first sent: still sent, the client dropped it on unsubscribe.
        await client.send(ENDPOINT, ["a"])
        assert delta_state(await client.recv()) == {"a": version(ENDPOINT, "a")}


async def test_unsubscribed_name_is_sent_again_when_a_wildcard_covers_it() -> None:
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(ENDPOINT, "a")
    async with ads_channel(source, observer) as channel, delta_stream(channel) as client:
        await client.send(ENDPOINT, ["a"])
        sent = await client.recv()
        await client.send(ENDPOINT, unsubscribe=["a"], nonce=sent.nonce)
        await client.send(ENDPOINT, ["*"])
        assert delta_state(await client.recv()) == {"a": version(ENDPOINT, "a")}


async def test_subscribed_name_is_sent_even_if_the_client_is_believed_to_hold_it() -> None:
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(ENDPOINT, "a")
    async with ads_channel(source) as channel, delta_stream(channel) as client:
        await client.send(ENDPOINT, ["a"])
        first = await client.recv()
        await client.send(ENDPOINT, ["a"], nonce=first.nonce)  # envoy#22418
        assert delta_state(await client.recv()) == {"a": version(ENDPOINT, "a")}


async def test_subscribing_again_to_a_held_name_that_is_gone_removes_it() -> None:
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(ENDPOINT, "a")
    async with ads_channel(source, observer) as channel, delta_stream(channel) as client:
        await client.send(ENDPOINT, ["a"])
        sent = await client.recv()
        await client.ack(sent)
        await processed(observer, sent.nonce)
        proxy.remove(ENDPOINT, "a")
        await client.send(ENDPOINT, ["a"])  # may arrive before or after the change is seen
        assert delta_state(await client.recv()) == {"a": None}


async def test_a_name_subscribed_twice_in_one_request_is_sent_once() -> None:
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(ENDPOINT, "a")
    async with ads_channel(source) as channel, delta_stream(channel) as client:
        await client.send(ENDPOINT, ["a", "a", "b"])
        proxy.put(ENDPOINT, "a", rev=1)  # also reported changed before the first build
        response = await client.recv()  # the client rejects a repeated name
        assert delta_state(response) == {"a": version(ENDPOINT, "a", rev=1)}


async def test_removed_resources_only_for_names_the_client_holds() -> None:
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    async with ads_channel(source) as channel, delta_stream(channel) as client:
        await start(client, CLUSTER, LISTENER)
        await client.send(ENDPOINT, ["never"])
        # Created and removed before the server looked: the client never had it.
        proxy.put(CLUSTER, "brief")
        proxy.remove(CLUSTER, "brief")
        await assert_quiet(client, proxy)
        proxy.remove(CLUSTER, "a")
        response = await client.recv()
        assert delta_state(response) == {"a": None}
        assert response.type_url == CLUSTER


async def test_ack_and_nack_are_reported_and_a_nacked_version_is_not_resent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    async with ads_channel(source, observer) as channel, delta_stream(channel) as client:
        (cds,) = await start(client, CLUSTER)
        await start(client, LISTENER)
        proxy.put(CLUSTER, "a", rev=1)
        rejected = await client.recv()
        assert delta_state(rejected) == {"a": version(CLUSTER, "a", rev=1)}
        with caplog.at_level(logging.WARNING, logger="kuma.xds.server"):
            await client.nack(rejected, "Invalid duration")
            await processed(observer, rejected.nonce)
        # No resend of the rejected version, not even when the engine reports it again.
        proxy.put(CLUSTER, "a", rev=1)
        await assert_quiet(client, proxy)
        # New content is sent.
        proxy.put(CLUSTER, "a", rev=2)
        assert delta_state(await client.recv()) == {"a": version(CLUSTER, "a", rev=2)}
    assert ("ack", NODE, CLUSTER, cds.nonce) in observer.events
    assert ("nack", NODE, CLUSTER, rejected.nonce, "Invalid duration") in observer.events
    (record,) = [r for r in caplog.records if "NACK" in r.getMessage()]
    message = record.getMessage()
    for part in (NODE, "cds", "[a]", "Invalid duration"):
        assert part in message


async def test_reconnect_with_initial_versions_sends_only_differences() -> None:
    source = FakeSource()
    proxy = source.proxy()
    for name in ("same", "changed", "new"):
        proxy.put(CLUSTER, name)
    for name in ("same", "changed"):
        proxy.put(ENDPOINT, name)
    proxy.put(ENDPOINT, "differs", rev=1)
    held_clusters = {
        "same": version(CLUSTER, "same"),
        "changed": "old-version",
        "gone": version(CLUSTER, "gone"),
    }
    held_endpoints = {
        name: version(ENDPOINT, name) for name in ("same", "changed", "differs", "gone")
    }
    async with ads_channel(source) as channel, delta_stream(channel) as client:
        await client.send(CLUSTER, initial=held_clusters)
        cds = await client.recv()
        assert delta_state(cds) == {
            "changed": version(CLUSTER, "changed"),
            "new": version(CLUSTER, "new"),
            "gone": None,
        }
        await client.ack(cds)
        subscribe = ["same", "changed", "differs", "gone", "new"]
        await client.send(ENDPOINT, subscribe, initial=held_endpoints)
        eds = await client.recv()
        assert delta_state(eds) == {
            # held at the current version, but its cluster was just updated (consul#19866)
            "changed": version(ENDPOINT, "changed"),
            "differs": version(ENDPOINT, "differs", rev=1),
            "gone": None,
        }


async def test_reconnect_with_nothing_changed_gets_an_empty_reply_and_nothing_else() -> None:
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    proxy.put(LISTENER, "l")
    proxy.put(ENDPOINT, "a")
    async with ads_channel(source) as channel, delta_stream(channel) as client:
        await client.send(CLUSTER, initial={"a": version(CLUSTER, "a")})
        assert delta_state(await client.recv()) == {}
        await client.send(ENDPOINT, ["a"], initial={"a": version(ENDPOINT, "a")})
        await client.send(LISTENER, initial={"l": version(LISTENER, "l")})
        response = await client.recv()
        assert (response.type_url, delta_state(response)) == (LISTENER, {})
        await assert_quiet(client, proxy)


async def test_make_before_break_order_within_one_wake_up() -> None:
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(CLUSTER, "old")
    proxy.put(ENDPOINT, "old")
    proxy.put(LISTENER, "l")
    proxy.put(LISTENER, "stale")
    async with ads_channel(source, observer) as channel, delta_stream(channel) as client:
        await start(client, CLUSTER, LISTENER)
        await client.send(ENDPOINT, ["old", "new"])
        eds = await client.recv()
        await client.send(ROUTE, ["r"], nonce=eds.nonce)
        await processed(observer, eds.nonce)
        # One batch: the listener moves from "old" to "new" and a route appears.
        proxy.put(CLUSTER, "new")
        proxy.put(ENDPOINT, "new")
        proxy.put(LISTENER, "l", rev=1)
        proxy.put(ROUTE, "r")
        proxy.remove(LISTENER, "stale")
        proxy.remove(ENDPOINT, "old")
        proxy.remove(CLUSTER, "old")
        seen = []
        for _ in range(7):
            response = await client.recv()
            seen.append((response.type_url, delta_state(response)))
    assert seen == [
        (CLUSTER, {"new": version(CLUSTER, "new")}),
        (ENDPOINT, {"new": version(ENDPOINT, "new")}),
        (LISTENER, {"l": version(LISTENER, "l", rev=1)}),
        (ROUTE, {"r": version(ROUTE, "r")}),
        (LISTENER, {"stale": None}),
        (ENDPOINT, {"old": None}),
        (CLUSTER, {"old": None}),
    ]


async def test_updates_and_removals_of_the_last_type_share_one_response() -> None:
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(LISTENER, "a")
    async with ads_channel(source) as channel, delta_stream(channel) as client:
        await start(client, LISTENER)
        proxy.remove(LISTENER, "a")
        proxy.put(LISTENER, "b")
        assert delta_state(await client.recv()) == {"a": None, "b": version(LISTENER, "b")}


async def test_cluster_update_resends_its_endpoints_and_an_earlier_ack_does_not_count() -> None:
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    proxy.put(CLUSTER, "b")
    proxy.put(ENDPOINT, "a")
    proxy.put(ENDPOINT, "b")
    async with ads_channel(source, observer) as channel, delta_stream(channel) as client:
        await start(client, CLUSTER, LISTENER)
        await client.send(ENDPOINT, ["a", "b"])
        early_eds = await client.recv()  # not ACKed yet (consul#19866)
        proxy.put(CLUSTER, "a", rev=1)
        cds = await client.recv()
        assert (cds.type_url, delta_state(cds)) == (CLUSTER, {"a": version(CLUSTER, "a", rev=1)})
        await client.ack(early_eds)  # late: refers to endpoints the cluster update cleared
        eds = await client.recv()
        # Unchanged, resent, and only for the cluster that changed.
        assert (eds.type_url, delta_state(eds)) == (ENDPOINT, {"a": version(ENDPOINT, "a")})
        await client.ack(cds)
        await client.ack(eds)
        await processed(observer, eds.nonce)
        await assert_quiet(client, proxy)


async def test_cluster_without_endpoint_subscription_sends_no_endpoints() -> None:
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(CLUSTER, "static")
    proxy.put(ENDPOINT, "static")
    proxy.put(ENDPOINT, "a")
    async with ads_channel(source) as channel, delta_stream(channel) as client:
        await start(client, CLUSTER, LISTENER)
        await client.send(ENDPOINT, ["a"])
        await client.ack(await client.recv())
        proxy.put(CLUSTER, "static", rev=1)
        assert delta_state(await client.recv()) == {"static": version(CLUSTER, "static", 1)}
        await assert_quiet(client, proxy)


async def test_unsubscribing_the_wildcard_stops_updates() -> None:
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    async with ads_channel(source, observer) as channel, delta_stream(channel) as client:
        await client.send(CLUSTER)
        cds = await client.recv()
        await start(client, LISTENER)
        await client.send(CLUSTER, unsubscribe=["*"], nonce=cds.nonce)
        await processed(observer, cds.nonce)
        proxy.put(CLUSTER, "a", rev=1)
        proxy.remove(CLUSTER, "a")
        proxy.put(CLUSTER, "b")
        await assert_quiet(client, proxy)


async def test_unknown_proxy_waits_until_known_then_receives() -> None:
    source = FakeSource()
    async with ads_channel(source) as channel, delta_stream(channel, "default.later") as client:
        await client.send(CLUSTER)
        await source.wait_opened("default.later")
        proxy = source.proxy("default.later")
        assert not proxy.known
        proxy.put(CLUSTER, "a")
        proxy.make_known()
        response = await client.recv()
        assert delta_state(response) == {"a": version(CLUSTER, "a")}


async def test_a_deleted_dataplane_keeps_the_proxys_last_configuration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 17 (README): as in Kuma, deleting a connected proxy's Dataplane does not take its
    configuration away (Kuma skips regenerating it); once the Dataplane is back, the proxy is
    brought up to date from what it holds."""
    caplog.set_level(logging.INFO, logger="kuma.xds.server.session")
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    proxy.put(LISTENER, "l")
    async with ads_channel(source) as channel, delta_stream(channel) as client:
        await start(client, CLUSTER, LISTENER)
        proxy.make_unknown()
        # The stream has seen the Dataplane go (where a wrong implementation sends removals).
        kept = "keeping its last configuration"
        with anyio.fail_after(10):
            while not any(kept in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        proxy.put(CLUSTER, "a", rev=1)
        proxy.put(LISTENER, "l")
        proxy.make_known()
        response = await client.recv()
        assert (response.type_url, delta_state(response)) == (
            CLUSTER,
            {"a": version(CLUSTER, "a", rev=1)},
        )
    assert any("keeping its last configuration" in r.getMessage() for r in caplog.records)


async def test_node_is_kept_from_the_first_request() -> None:
    source = FakeSource()
    source.proxy().put(CLUSTER, "a")
    source.proxy("default.other").put(CLUSTER, "other")
    async with ads_channel(source) as channel, delta_stream(channel) as client:
        await start(client, CLUSTER)
        # Later requests carry no node (the fake client never sends it again): still this proxy.
        await client.send(LISTENER)
        assert (await client.recv()).type_url == LISTENER
        assert source.opened == [NODE]


async def test_the_nodes_metadata_reaches_the_source() -> None:
    source = FakeSource()
    source.proxy().put(CLUSTER, "a")
    async with ads_channel(source) as channel, delta_stream(channel) as client:
        client.node_metadata = {"dataplane.dns.port": "15053"}
        await start(client, CLUSTER)
        assert source.metadata[NODE] == ProxyMetadata(dns_port=15053)


@pytest.mark.parametrize(
    ("node_id", "type_url", "expected"),
    [
        ("", CLUSTER, "node.id"),
        ("nodot", CLUSTER, "'<mesh>.<name>'"),
        (".", CLUSTER, "'<mesh>.<name>'"),
        ("default.", CLUSTER, "'<mesh>.<name>'"),
        (NODE, "", "type_url is required"),
    ],
)
async def test_bad_first_request_ends_only_that_stream(
    node_id: str, type_url: str, expected: str
) -> None:
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    async with ads_channel(source) as channel, delta_stream(channel) as good:
        await start(good, CLUSTER)
        async with delta_stream(channel, node_id) as bad:
            await bad.send(type_url)
            await bad.drain()
        assert bad.error is not None
        assert bad.error.status is Status.INVALID_ARGUMENT
        assert expected in (bad.error.message or "")
        proxy.put(CLUSTER, "a", rev=1)
        assert delta_state(await good.recv()) == {"a": version(CLUSTER, "a", rev=1)}


RUNTIME = "type.googleapis.com/envoy.service.runtime.v3.Runtime"
EXTENSION = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"


async def test_an_unknown_type_is_answered_with_nothing_and_the_stream_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 17, defect 8: Envoy may subscribe to types a control plane does not serve. Such a
    type gets no response (first request or later), is logged once per stream, and the
    configuration already flowing on the stream keeps flowing."""
    caplog.set_level(logging.INFO, logger="kuma.xds.server.incoming")
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    async with ads_channel(source, observer) as channel, delta_stream(channel) as client:
        await client.send(EXTENSION)  # the first request: it still names the node
        await start(client, CLUSTER, LISTENER)
        for _ in range(3):
            await client.send(RUNTIME)
            await client.send(EXTENSION, nonce="forged")
        proxy.put(CLUSTER, "a", rev=1)
        response = await client.recv()
        assert delta_state(response) == {"a": version(CLUSTER, "a", rev=1)}
        await client.ack(response)
        await assert_quiet(client, proxy)
    assert client.error is None
    logged = [r.getMessage() for r in caplog.records if "unknown type" in r.getMessage()]
    assert len(logged) == 1
    assert EXTENSION in logged[0]


async def test_replies_to_nonces_never_sent_count_as_neither_ack_nor_nack() -> None:
    """Issue 17, defect 2: a forged ACK, a NACK of an unknown nonce and a second answer to a
    real nonce are reported as stale, never as ACKs or NACKs; a real ACK still counts."""
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    async with ads_channel(source, observer) as channel, delta_stream(channel) as client:
        (cds,) = await start(client, CLUSTER)
        await processed(observer, cds.nonce)
        await client.send(CLUSTER, nonce="forged")
        await client.send(CLUSTER, nonce="ffff", error="made up")
        await client.send(CLUSTER, nonce=cds.nonce)  # answered already
        await observer.wait_for(lambda e: e[0] == "stale" and e[3] == cds.nonce)
    assert [e[3] for e in observer.of_kind("ack")] == [cds.nonce]
    assert observer.of_kind("nack") == []
    assert [e[3] for e in observer.of_kind("stale")] == ["forged", "ffff", cds.nonce]


class _Garbage:
    """Bytes that are no protobuf message at all (a truncated varint)."""

    def SerializeToString(self) -> bytes:
        return b"\xff\xff\xff"


async def _send_garbage(channel: Channel) -> None:
    raw = channel.request(DELTA_METHOD, Cardinality.STREAM_STREAM, _Garbage, _Garbage)
    # The status surfaces from the stream's context (a read may see only the reset).
    async with raw as stream:
        await stream.send_message(_Garbage())
        await stream.recv_message()


async def test_undecodable_request_ends_only_that_stream() -> None:
    source = FakeSource()
    source.proxy().put(CLUSTER, "a")
    async with ads_channel(source) as channel, delta_stream(channel) as good:
        await start(good, CLUSTER)
        with anyio.fail_after(DEADLINE), pytest.raises(GRPCError) as caught:
            await _send_garbage(channel)
        assert caught.value.status is Status.INVALID_ARGUMENT
        assert "undecodable" in (caught.value.message or "")
        source.proxy().put(CLUSTER, "b")
        assert set(delta_state(await good.recv())) == {"b"}


async def test_streams_of_two_proxies_are_independent() -> None:
    source = FakeSource()
    source.proxy().put(CLUSTER, "mine")
    other = source.proxy("default.web-2")
    other.put(CLUSTER, "theirs")
    async with (
        ads_channel(source) as channel,
        delta_stream(channel) as one,
        delta_stream(channel, "default.web-2") as two,
    ):
        (cds_one,) = await start(one, CLUSTER)
        (cds_two,) = await start(two, CLUSTER)
        assert set(delta_state(cds_one)) == {"mine"}
        assert set(delta_state(cds_two)) == {"theirs"}
        other.put(CLUSTER, "theirs", rev=1)
        assert set(delta_state(await two.recv())) == {"theirs"}
