""":mod:`kuma.xds.server.direct_send`: a message written at once leaves the same bytes on the
transport and the same grpclib and h2 state as grpclib's ``send_message``; whenever grpclib
could do anything else the fast path declines and writes nothing."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Any

import grpclib.client
import h2.config
import h2.connection
import h2.exceptions
import pytest
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
)
from grpclib.const import Cardinality, Handler
from grpclib.events import SendMessage, listen
from grpclib.testing import ChannelFor

from kuma.xds.generate.types import CLUSTER
from kuma.xds.server.direct_send import _send_data, send_now
from kuma.xds.server.service import DeltaReply
from kuma.xds.server.wire import WireResponse

pytestmark = pytest.mark.anyio

METHOD = "/test.Direct/Send"


def _wire(nonce: str, size: int = 40) -> WireResponse:
    message = DeltaDiscoveryResponse(type_url=CLUSTER, nonce=nonce, system_version_info="x" * size)
    return WireResponse(CLUSTER, nonce, 0, message.SerializeToString())


class _Recording:
    """A transport that keeps what is written to it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


Body = Callable[[Any], Awaitable[None]]


class _Service:
    """One streaming method: reads a request, then runs ``body`` on the server stream."""

    def __init__(self, body: Body) -> None:
        self._body = body

    def __mapping__(self) -> dict[str, Handler]:
        return {
            METHOD: Handler(
                self._handle, Cardinality.STREAM_STREAM, DeltaDiscoveryRequest, DeltaReply
            )
        }

    async def _handle(self, stream: Any) -> None:
        await stream.recv_message()
        await self._body(stream)


async def _serve(body: Body, expected: int) -> list[DeltaDiscoveryResponse]:
    """Run ``body`` on the server side of one stream; what the client received."""
    async with ChannelFor([_Service(body)]) as channel:
        return await _client(channel, expected)


async def _client(channel: Any, expected: int) -> list[DeltaDiscoveryResponse]:
    method = grpclib.client.StreamStreamMethod(
        channel, METHOD, DeltaDiscoveryRequest, DeltaDiscoveryResponse
    )
    async with method.open() as stream:
        await stream.send_message(DeltaDiscoveryRequest(type_url=CLUSTER), end=True)
        received = [await stream.recv_message() for _ in range(expected)]
        assert await stream.recv_message() is None  # nothing more than expected
        return received


def _state(stream: Any) -> tuple[Any, ...]:
    inner = stream._stream
    h2, connection = inner._h2_connection, inner.connection
    return (
        stream._messages_sent,
        stream._send_message_done,
        inner.data_sent,
        connection.data_sent,
        connection.messages_sent,
        connection.last_message_sent is not None,
        h2.outbound_flow_control_window,
        h2.local_flow_control_window(inner.id),
        h2.streams[inner.id].state_machine.state,
        h2.streams[inner.id].outbound_flow_control_window,
        h2.state_machine.state,
        h2.data_to_send(),
    )


async def _sent(direct: bool) -> tuple[list[bytes], tuple[Any, ...], list[str], int]:
    """What the transport was given, the state after, what the client got, and how many
    messages went the direct way."""
    messages: list[Any] = [
        _wire("2"),
        DeltaDiscoveryResponse(type_url=CLUSTER, nonce="3"),
        _wire("4", size=20_000),  # larger than a frame: grpclib's path, either way
        _wire("5", size=0),
    ]
    seen: dict[str, Any] = {"direct": 0}

    async def body(stream: Any) -> None:
        await stream.send_message(_wire("1"))  # the headers go first: grpclib's path
        recording = stream._stream._transport = _Recording(stream._stream._transport)
        for message in messages:
            if direct and send_now(stream, message):
                seen["direct"] += 1
            else:
                await stream.send_message(message)
        seen["writes"], seen["state"] = recording.writes, _state(stream)

    received = await _serve(body, 1 + len(messages))
    return seen["writes"], seen["state"], [r.nonce for r in received], seen["direct"]


async def test_the_same_bytes_and_state_as_grpclibs_send_message() -> None:
    slow, direct = await _sent(direct=False), await _sent(direct=True)
    assert direct[:3] == slow[:3]
    assert direct[2] == ["1", "2", "3", "4", "5"]
    assert (slow[3], direct[3]) == (0, 3)  # all but the one larger than a frame


async def test_declines_whatever_grpclib_would_do_otherwise() -> None:
    declined: list[bool] = []

    async def body(stream: Any) -> None:
        declined.append(send_now(stream, _wire("first")))  # headers not sent yet
        await stream.send_message(_wire("1"))
        connection = stream._stream.connection
        connection.write_ready.clear()  # the transport paused writing
        declined.append(send_now(stream, _wire("paused")))
        connection.write_ready.set()
        # More than the stream's window (65,535 bytes): sent in pieces, after window updates.
        declined.append(send_now(stream, _wire("big", size=70_000)))
        assert send_now(stream, _wire("2"))
        assert stream._messages_sent == 2

    received = await _serve(body, 2)
    assert declined == [False, False, False]
    assert [r.nonce for r in received] == ["1", "2"]


async def test_declines_when_a_send_listener_is_set() -> None:
    heard: list[Any] = []
    result: list[bool] = []

    async def on_send(event: SendMessage) -> None:
        heard.append(event.message.nonce)

    async def body(stream: Any) -> None:
        await stream.send_message(_wire("1"))
        result.append(send_now(stream, _wire("2")))
        await stream.send_message(_wire("2"))

    service = ChannelFor([_Service(body)])
    async with service as channel:
        listen(service._server, SendMessage, on_send)
        await _client(channel, 2)
    assert result == [False]
    assert heard == ["1", "2"]


def test_declines_objects_it_does_not_know() -> None:
    assert not send_now(object(), _wire("1"))


def _h2_pair(*, logger: Any = None, client_ended: bool = False) -> Any:
    """A server-side h2 connection with stream 1 open (half closed by the client if
    ``client_ended``), its headers sent."""
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding="ascii", logger=logger)
    )
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    headers = [(":method", "POST"), (":path", METHOD), (":scheme", "http"), (":authority", "a")]
    client.send_headers(1, headers, end_stream=client_ended)
    server.receive_data(client.data_to_send())
    server.send_headers(1, [(":status", "200")])
    return server


def _h2_state(connection: Any) -> tuple[Any, ...]:
    stream = connection.streams[1]
    return (
        connection.data_to_send(),
        connection.outbound_flow_control_window,
        stream.outbound_flow_control_window,
        connection.state_machine.state,
        stream.state_machine.state,
    )


@pytest.mark.parametrize(
    "setup",
    [
        {},
        {"client_ended": True},
        {"logging": True},
        {"server_ended": True},
        {"closed": True},
    ],
    ids=["open", "half-closed-remote", "logging", "stream-ended", "connection-closed"],
)
def test_h2_send_data_as_h2_does_it(setup: dict[str, Any]) -> None:
    """The same frame and state as h2's ``send_data``, or the same refusal."""
    outcomes: list[Any] = []
    for send in (_send_data, lambda c, i, d: c.send_data(i, d, end_stream=False)):
        log = io.StringIO()
        logger = h2.config.OutputLogger(log) if setup.get("logging") else None
        connection = _h2_pair(logger=logger, client_ended=setup.get("client_ended", False))
        if setup.get("server_ended"):
            connection.end_stream(1)
        if setup.get("closed"):
            connection.close_connection()
        log.seek(0)
        log.truncate()  # what the setup logged (object addresses among it)
        try:
            send(connection, 1, b"\x00\x00\x00\x00\x03abc")
            send(connection, 1, b"")
            outcomes.append((_h2_state(connection), log.getvalue()))
        except h2.exceptions.ProtocolError as error:
            state = connection.streams[1].state_machine.state
            outcomes.append((type(error), connection.state_machine.state, state))
    assert outcomes[0] == outcomes[1]
