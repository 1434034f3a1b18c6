"""kuma.load.fast_send: a sidecar's requests written straight to its HTTP/2 stream arrive as
grpclib's own send would deliver them, and anything it cannot send whole goes grpclib's way."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest
from grpclib.testing import ChannelFor

from kuma.load.fast_send import try_send
from kuma.load.shared import Shared
from kuma.load.wire import entry_hash
from kuma.xds.server.service import AggregatedDiscoveryServiceBase, AggregatedDiscoveryServiceStub

pytestmark = pytest.mark.anyio

TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


class Recorder(AggregatedDiscoveryServiceBase):
    def __init__(self) -> None:
        self.received: list[Any] = []

    async def StreamAggregatedResources(self, stream: Any) -> None:
        raise NotImplementedError

    async def DeltaAggregatedResources(self, stream: Any) -> None:
        async for request in stream:
            # The server reads kuma-cp's request type (without node.extensions): compared
            # here as Envoy's, from the same bytes.
            self.received.append(DeltaDiscoveryRequest.FromString(request.SerializeToString()))


async def test_requests_after_the_first_go_the_fast_way_and_arrive_unchanged() -> None:
    server = Recorder()
    first = DeltaDiscoveryRequest(type_url=TYPE, initial_resource_versions={"a": "1"})
    acks = [DeltaDiscoveryRequest(type_url=TYPE, response_nonce=str(n)) for n in range(3)]
    async with ChannelFor([server]) as channel:
        stub = AggregatedDiscoveryServiceStub(channel)
        async with stub.DeltaAggregatedResources.open() as stream:
            # Nothing sent yet: the request headers go with grpclib's first send.
            assert not try_send(stream, first)
            await stream.send_message(first)
            taken = [try_send(stream, ack) for ack in acks]
            await stream.end()
            assert await stream.recv_message() is None
    assert taken == [True, True, True]
    assert server.received == [first, *acks]


async def test_what_does_not_fit_one_frame_is_left_to_grpclib() -> None:
    server = Recorder()
    big = DeltaDiscoveryRequest(type_url=TYPE, resource_names_subscribe=["x" * 20_000])
    async with ChannelFor([server]) as channel:
        stub = AggregatedDiscoveryServiceStub(channel)
        async with stub.DeltaAggregatedResources.open() as stream:
            await stream.send_message(DeltaDiscoveryRequest(type_url=TYPE))
            assert not try_send(stream, big)
            await stream.send_message(big)
            await stream.end()
            assert not try_send(stream, big)  # an ended stream: grpclib raises, not us
            assert await stream.recv_message() is None
    assert server.received[1] == big


def test_a_workers_entry_hashes_are_the_digests() -> None:
    shared = Shared("127.0.0.1", 1, 0)
    assert shared.entry_hash(1, "svc", "v7") == entry_hash(1, "svc", "v7")
    assert shared.entry_hash(1, "svc", "v7") == entry_hash(1, "svc", "v7")  # cached
    assert shared.entry_hash(2, "svc", "v7") == entry_hash(2, "svc", "v7")
