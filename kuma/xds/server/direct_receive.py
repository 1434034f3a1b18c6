"""A request read from its HTTP/2 stream with three awaits fewer than grpclib's ``recv_message``.

grpclib's ``Stream.recv_message`` (server) awaits ``grpclib.stream.recv_message``, which awaits
``protocol.Stream.recv_data`` twice (prefix, body), each awaiting the stream's ``Buffer.read``;
then it awaits its event dispatch's ``recv_message`` (a no-op coroutine without a listener). An
ACK is read once per response, so in a fan-out the chain runs once per proxy.

:func:`receive_message` makes the same calls in the same order: the two ``Buffer.read`` (which
stay grpclib's own: they wait for the data and acknowledge it to HTTP/2 flow control, so window
updates are exactly grpclib's), the codec's ``decode``, and grpclib's counters. With a
``RecvMessage`` listener, or objects that lack what is read here (another grpclib version), it
awaits grpclib's ``recv_message``. tests/xds/test_server_direct_receive.py checks that it returns
the same messages and leaves the same state and bytes as grpclib's path.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import grpclib
import grpclib.events

#: What grpclib puts in place of a dispatch method that has no listener (``None`` in a grpclib
#: without it: never the direct path).
_NO_LISTENER: Any = getattr(grpclib.events, "_ident", None)
#: The grpclib versions whose internals this module was written against and tested with.
_KNOWN_VERSION = grpclib.__version__.startswith("0.4.")
#: grpclib's message prefix: the compressed flag, then the length, big-endian.
_PREFIX = struct.Struct(">?I")


def _readable(stream: Any) -> Any:
    """The stream's HTTP/2 stream (``grpclib.protocol.Stream``) if the direct read applies."""
    if _NO_LISTENER is None or not _KNOWN_VERSION:
        return None
    try:
        if stream._dispatch.recv_message is not _NO_LISTENER:
            return None
        inner = stream._stream
        # Read here, so that nothing below can fail for lack of an attribute half-way.
        inner.buffer.read  # noqa: B018
        inner.connection.messages_received  # noqa: B018
        stream._codec.decode  # noqa: B018
        stream._recv_type  # noqa: B018
        stream._messages_received  # noqa: B018
    except AttributeError:
        return None
    return inner


async def receive_message(stream: Any) -> Any:
    """``await stream.recv_message()`` for a grpclib server ``stream``: the next message, or
    ``None`` when the client has ended its side."""
    inner = _readable(stream)
    if inner is None:
        return await stream.recv_message()
    buffer = inner.buffer
    # What grpclib.stream.recv_message does.
    meta = await buffer.read(5)
    if not meta:
        return None
    compressed, size = _PREFIX.unpack(meta)
    if compressed:
        raise NotImplementedError("Compression not implemented")
    body = await buffer.read(size)
    if len(body) != size:  # grpclib asserts it
        raise AssertionError(f"{len(body)} != {size}")
    message = stream._codec.decode(body, stream._recv_type)
    # What grpclib.server.Stream.recv_message does after.
    stream._messages_received += 1
    connection = inner.connection
    connection.messages_received += 1
    connection.last_message_received = time.monotonic()
    return message
