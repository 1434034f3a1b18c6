"""State-of-the-world ADS over grpclib's in-memory channel, against a driven ConfigSource.

"Nothing more is sent" is checked with a marker listener: the next response must be the LDS
set with the marker, and anything still pending for clusters or endpoints would come first.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from grpclib.const import Status

from kuma.xds.generate.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from kuma.xds.server.sotw import set_version

from .fakes import (
    NODE,
    FakeProxy,
    FakeSource,
    RecordingObserver,
    SotwClient,
    ads_channel,
    resource,
    sotw_stream,
)

pytestmark = pytest.mark.anyio

_markers = itertools.count()


def names(response: Any) -> list[str]:
    """The names of the resources in a SotW response, decoded from the packed messages."""
    return [_name(item.type_url, item.value) for item in response.resources]


_MESSAGES: dict[str, Any] = {
    CLUSTER: Cluster,
    ENDPOINT: ClusterLoadAssignment,
    LISTENER: Listener,
    ROUTE: RouteConfiguration,
}


def _name(type_url: str, body: bytes) -> str:
    message = _MESSAGES[type_url].FromString(body)
    return str(message.cluster_name if type_url == ENDPOINT else message.name)


def expected_version(type_url: str, revs: dict[str, int]) -> str:
    return set_version({name: resource(type_url, name, rev) for name, rev in revs.items()})


async def ack(client: SotwClient, response: Any, names: list[str] | tuple[str, ...] = ()) -> None:
    await client.send(response.type_url, names, version=response.version_info, nonce=response.nonce)


async def processed(observer: RecordingObserver, nonce: str) -> None:
    await observer.wait_for(lambda event: event[0] in ("ack", "nack") and event[3] == nonce)


async def assert_quiet(client: SotwClient, proxy: FakeProxy) -> None:
    marker = f"marker-{next(_markers)}"
    proxy.put(LISTENER, marker)
    response = await client.recv()
    assert response.type_url == LISTENER
    assert marker in names(response)
    await ack(client, response)


async def test_wildcard_clusters_and_listeners_are_full_sets_and_acks_are_reported() -> None:
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(CLUSTER, "b")
    proxy.put(CLUSTER, "a")
    proxy.put(LISTENER, "l")
    async with ads_channel(source, observer) as channel, sotw_stream(channel) as client:
        await client.send(CLUSTER)
        cds = await client.recv()
        assert names(cds) == ["a", "b"]
        assert cds.version_info == expected_version(CLUSTER, {"a": 0, "b": 0})
        await ack(client, cds)
        await client.send(LISTENER)
        lds = await client.recv()
        assert names(lds) == ["l"]
        await ack(client, lds)
        proxy.put(CLUSTER, "c")
        cds = await client.recv()
        assert names(cds) == ["a", "b", "c"]  # the whole set, not the change
        await ack(client, cds)
        await processed(observer, cds.nonce)
        await assert_quiet(client, proxy)
        await client.close()
    assert ("ack", NODE, CLUSTER, cds.nonce) in observer.events
    assert observer.of_kind("open") == [("open", 1, NODE, "sotw", "1.40.0")]
    assert observer.of_kind("close") == [("close", 1, NODE)]


async def test_first_wildcard_request_is_answered_even_when_empty() -> None:
    source = FakeSource()
    source.proxy()
    async with ads_channel(source) as channel, sotw_stream(channel) as client:
        for type_url in (CLUSTER, LISTENER):
            await client.send(type_url)
            response = await client.recv()
            assert (response.type_url, names(response)) == (type_url, [])


async def test_endpoints_are_the_requested_names_and_empty_means_none() -> None:
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(ENDPOINT, "a")
    proxy.put(ENDPOINT, "other")
    async with ads_channel(source, observer) as channel, sotw_stream(channel) as client:
        await client.send(LISTENER)
        lds = await client.recv()
        await client.send(ENDPOINT)  # no names: not a wildcard for endpoints
        await ack(client, lds)  # handled after the EDS request: something to wait for
        await processed(observer, lds.nonce)
        proxy.put(ENDPOINT, "a", rev=1)
        await assert_quiet(client, proxy)
        await client.send(ENDPOINT, ["a", "b"])
        eds = await client.recv()
        assert names(eds) == ["a"]
        assert eds.version_info == expected_version(ENDPOINT, {"a": 1})
        await ack(client, eds, ["a", "b"])
        proxy.put(ENDPOINT, "b")  # subscribed before it existed
        eds = await client.recv()
        assert names(eds) == ["a", "b"]
        await ack(client, eds, ["a", "b"])
        await client.send(ENDPOINT, ["b"])
        assert names(await client.recv()) == ["b"]


async def test_nack_keeps_the_last_accepted_version_and_is_not_repushed() -> None:
    source, observer = FakeSource(), RecordingObserver()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    async with ads_channel(source, observer) as channel, sotw_stream(channel) as client:
        await client.send(CLUSTER)
        accepted = await client.recv()
        await ack(client, accepted)
        await client.send(LISTENER)
        await ack(client, await client.recv())
        proxy.put(CLUSTER, "a", rev=1)
        rejected = await client.recv()
        await client.send(
            CLUSTER, version=accepted.version_info, nonce=rejected.nonce, error="Invalid duration"
        )
        await processed(observer, rejected.nonce)
        proxy.put(CLUSTER, "a", rev=1)  # reported again, same content
        await assert_quiet(client, proxy)
        proxy.put(CLUSTER, "a", rev=2)
        fixed = await client.recv()
        assert fixed.version_info == expected_version(CLUSTER, {"a": 2})
    assert ("nack", NODE, CLUSTER, rejected.nonce, "Invalid duration") in observer.events


async def test_reconnect_with_the_current_version_is_sent_nothing() -> None:
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    proxy.put(LISTENER, "l")
    async with ads_channel(source) as channel, sotw_stream(channel) as client:
        await client.send(CLUSTER, version=expected_version(CLUSTER, {"a": 0}))
        await client.send(LISTENER, version="from-before")
        lds = await client.recv()
        assert lds.type_url == LISTENER
        await ack(client, lds)
        await assert_quiet(client, proxy)


async def test_cluster_change_resends_its_endpoints_unchanged() -> None:
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    proxy.put(CLUSTER, "b")
    proxy.put(ENDPOINT, "a")
    async with ads_channel(source) as channel, sotw_stream(channel) as client:
        await client.send(CLUSTER)
        await ack(client, await client.recv())
        await client.send(LISTENER)
        await ack(client, await client.recv())
        await client.send(ENDPOINT, ["a"])
        eds = await client.recv()
        await ack(client, eds, ["a"])
        proxy.put(CLUSTER, "b", rev=1)  # endpoints of "b" are not requested: nothing for EDS
        await ack(client, await client.recv())
        await assert_quiet(client, proxy)
        proxy.put(CLUSTER, "a", rev=1)
        cds = await client.recv()
        assert cds.type_url == CLUSTER
        again = await client.recv()
        assert (again.type_url, names(again)) == (ENDPOINT, ["a"])
        assert again.version_info == eds.version_info
        assert again.nonce != eds.nonce


async def test_removed_cluster_outlives_the_listener_change_in_one_wake_up() -> None:
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(CLUSTER, "old")
    proxy.put(LISTENER, "l")
    async with ads_channel(source) as channel, sotw_stream(channel) as client:
        await client.send(CLUSTER)
        await ack(client, await client.recv())
        await client.send(LISTENER)
        await ack(client, await client.recv())
        proxy.put(CLUSTER, "new")
        proxy.remove(CLUSTER, "old")
        proxy.put(LISTENER, "l", rev=1)
        seen = [await client.recv() for _ in range(3)]
    assert [(r.type_url, names(r)) for r in seen] == [
        (CLUSTER, ["new", "old"]),
        (LISTENER, ["l"]),
        (CLUSTER, ["new"]),
    ]
    assert seen[2].version_info == expected_version(CLUSTER, {"new": 0})


async def test_legacy_wildcard_ends_with_the_first_names_and_star_restores_it() -> None:
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(LISTENER, "x")
    proxy.put(LISTENER, "y")
    async with ads_channel(source) as channel, sotw_stream(channel) as client:
        await client.send(LISTENER)
        lds = await client.recv()
        assert names(lds) == ["x", "y"]
        await ack(client, lds)  # still no names: still the wildcard
        await client.send(LISTENER, ["x"])
        lds = await client.recv()
        assert names(lds) == ["x"]
        await ack(client, lds, ["x"])
        await client.send(LISTENER, ["x", "*"])
        assert names(await client.recv()) == ["x", "y"]


async def test_an_unknown_type_gets_nothing_and_the_stream_goes_on() -> None:
    """Issue 17, defect 8 (state of the world): no response for it, the stream is kept."""
    source = FakeSource()
    proxy = source.proxy()
    proxy.put(CLUSTER, "a")
    async with ads_channel(source) as channel, sotw_stream(channel) as client:
        await client.send("type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig")
        await client.send(CLUSTER)
        await ack(client, await client.recv())
        await client.send("type.googleapis.com/envoy.service.runtime.v3.Runtime")
        proxy.put(CLUSTER, "b")
        assert names(await client.recv()) == ["a", "b"]
    assert client.error is None


async def test_bad_node_id_is_invalid_argument() -> None:
    source = FakeSource()
    async with ads_channel(source) as channel, sotw_stream(channel, "no-mesh") as client:
        await client.send(CLUSTER)
        await client.drain()
    assert client.error is not None
    assert client.error.status is Status.INVALID_ARGUMENT


async def test_unknown_proxy_waits_until_known() -> None:
    source = FakeSource()
    async with ads_channel(source) as channel, sotw_stream(channel, "default.later") as client:
        await client.send(CLUSTER)
        await source.wait_opened("default.later")
        proxy = source.proxy("default.later")
        proxy.put(CLUSTER, "a")
        proxy.make_known()
        assert names(await client.recv()) == ["a"]
