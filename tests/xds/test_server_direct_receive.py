""":mod:`kuma.xds.server.direct_receive`: a request read with fewer awaits returns the same
messages and leaves the same grpclib and h2 state (flow-control windows, window updates queued)
as grpclib's ``recv_message``; with a listener or unknown objects it is grpclib's call."""

from __future__ import annotations

from typing import Any

import grpclib.client
import pytest
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest
from grpclib.const import Cardinality, Handler
from grpclib.events import RecvMessage, listen
from grpclib.testing import ChannelFor

from kuma.xds.generate.types import CLUSTER
from kuma.xds.server import direct_receive
from kuma.xds.server.direct_receive import receive_message
from kuma.xds.server.service import DeltaReply

pytestmark = pytest.mark.anyio

METHOD = "/test.Direct/Receive"

REQUESTS = [
    DeltaDiscoveryRequest(type_url=CLUSTER, response_nonce="1"),
    DeltaDiscoveryRequest(type_url=CLUSTER, response_nonce="2", error_detail={"message": "x"}),
    DeltaDiscoveryRequest(),  # an empty message: a zero-length body
    # Larger than a frame (16 KiB): the body arrives in several DATA frames.
    DeltaDiscoveryRequest(type_url=CLUSTER, resource_names_subscribe=["n" * 100] * 300),
]


def _state(stream: Any) -> tuple[Any, ...]:
    inner = stream._stream
    h2, connection = inner._h2_connection, inner.connection
    return (
        stream._messages_received,
        connection.messages_received,
        connection.last_message_received is not None,
        h2.inbound_flow_control_window,
        h2.remote_flow_control_window(inner.id),
        h2.streams[inner.id].inbound_flow_control_window,
        h2.data_to_send(),  # the WINDOW_UPDATE frames grpclib's acknowledgements queued
        inner.buffer._acked_size,
    )


class _Service:
    """One streaming method that reads every request, directly or with grpclib."""

    def __init__(self, direct: bool) -> None:
        self.direct = direct
        self.received: list[Any] = []
        self.states: list[tuple[Any, ...]] = []

    def __mapping__(self) -> dict[str, Handler]:
        return {
            METHOD: Handler(
                self._handle, Cardinality.STREAM_STREAM, DeltaDiscoveryRequest, DeltaReply
            )
        }

    async def _handle(self, stream: Any) -> None:
        while True:
            if self.direct:
                message = await receive_message(stream)
            else:
                message = await stream.recv_message()
            self.states.append(_state(stream))
            self.received.append(message)
            if message is None:
                return


async def _received(direct: bool, *, listener: bool = False) -> _Service:
    service = _Service(direct)
    seen: list[Any] = []
    testing = ChannelFor([service])
    async with testing as channel:
        if listener:

            async def on_message(event: RecvMessage) -> None:
                seen.append(event.message)

            listen(testing._server, RecvMessage, on_message)
        method = grpclib.client.StreamStreamMethod(
            channel, METHOD, DeltaDiscoveryRequest, DeltaDiscoveryRequest
        )
        async with method.open() as stream:
            for request in REQUESTS:
                await stream.send_message(request)
            await stream.end()
            assert await stream.recv_message() is None
    if listener:
        assert seen == REQUESTS
    return service


async def test_the_same_messages_and_state_as_grpclibs_recv_message() -> None:
    slow, direct = await _received(direct=False), await _received(direct=True)
    assert direct.received == [*REQUESTS, None]
    assert direct.received == slow.received
    assert direct.states == slow.states


async def test_a_recv_message_listener_gets_grpclibs_path() -> None:
    direct = await _received(direct=True, listener=True)
    assert direct.received == [*REQUESTS, None]


async def test_declines_on_objects_it_does_not_know() -> None:
    assert direct_receive._readable(object()) is None


async def test_direct_path_taken_without_a_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    """The direct path does not call grpclib's ``recv_message``."""

    async def refuse(self: Any) -> Any:
        raise AssertionError("grpclib's recv_message called")

    monkeypatch.setattr(grpclib.server.Stream, "recv_message", refuse)
    direct = await _received(direct=True)
    assert direct.received == [*REQUESTS, None]
