"""A response written to its HTTP/2 stream without grpclib's awaits, when nothing would wait.

grpclib's ``Stream.send_message`` is a chain of five coroutines (the server stream's, the event
dispatch's, the message framing's, the HTTP/2 stream's ``send_data`` and its connection's
``write_ready.wait``) around what, in the common case, is a few synchronous calls: frame the
message, h2's ``send_data`` and ``data_to_send``, the transport's ``write``. In a fan-out every
connected proxy is sent one small response with its windows open and its transport not paused,
so the chain runs once per proxy and never suspends.

:func:`send_now` makes exactly those calls, in grpclib's order, and keeps grpclib's statistics.
Whenever grpclib could do anything else it returns ``False`` and the caller awaits grpclib's
``send_message`` as before: the stream's first message (its headers go first), a paused
transport (``write_ready`` clear), a window or peer's frame size smaller than the message (sent
in pieces, or after waiting), a ``SendMessage`` listener, a stream whose trailers are sent, a
stream that is not server-streaming, or objects that lack what is read here (another grpclib
version). It only reads grpclib's private names, so with another version it only ever falls
back. tests/xds/test_server_direct_send.py checks it writes the same bytes and leaves the same
state as grpclib's own path.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import grpclib
import grpclib.events
import h2
from h2.config import DummyLogger
from h2.connection import ConnectionState
from h2.stream import StreamState

#: What grpclib puts in place of a dispatch method that has no listener (``None`` in a grpclib
#: without it: never the fast path).
_NO_LISTENER: Any = getattr(grpclib.events, "_ident", None)

#: The grpclib and h2 versions whose internals this module was written against and tested
#: with: with any other, grpclib's and h2's own calls are made (h2's ``send_data`` included).
_KNOWN_VERSIONS = grpclib.__version__.startswith("0.4.") and h2.__version__.startswith("4.")

#: grpclib's message prefix: the compressed flag (never set), then the length, big-endian.
_PREFIX = struct.Struct(">?I")


def _writable(stream: Any) -> Any:
    """The stream's HTTP/2 stream (``grpclib.protocol.Stream``) if grpclib would write a message
    right away on it, else ``None``."""
    if _NO_LISTENER is None or not _KNOWN_VERSIONS:
        return None
    try:
        if (
            not stream._send_initial_metadata_done
            or stream._send_trailing_metadata_done
            or not stream._cardinality.server_streaming
            or stream._dispatch.send_message is not _NO_LISTENER
        ):
            return None
        inner = stream._stream
        if inner.id is None or not inner.connection.write_ready.is_set():
            return None
        # Read here, so that nothing below can fail for lack of an attribute half-way.
        inner._h2_connection.local_flow_control_window  # noqa: B018
        inner._transport.write  # noqa: B018
        stream._codec.encode  # noqa: B018
        stream._send_type  # noqa: B018
    except AttributeError:
        return None
    return inner


def send_now(stream: Any, message: Any) -> bool:
    """Write ``message`` on the grpclib server ``stream`` now, as ``await
    stream.send_message(message)`` would without suspending; ``False`` (nothing written) when
    that call could suspend or do anything else."""
    inner = _writable(stream)
    if inner is None:
        return False
    data = stream._codec.encode(message, stream._send_type)
    payload = _PREFIX.pack(False, len(data)) + data
    size = len(payload)
    h2_connection = inner._h2_connection
    stream_id = inner.id
    # grpclib sends a message in one DATA frame when both allow it (else in several, or later).
    if (
        size > h2_connection.local_flow_control_window(stream_id)
        or size > h2_connection.max_outbound_frame_size
    ):
        return False
    # What grpclib.protocol.Stream.send_data does for the last (here the only) piece.
    _send_data(h2_connection, stream_id, payload)
    inner._transport.write(h2_connection.data_to_send())
    connection = inner.connection
    inner.data_sent += size
    connection.data_sent += size
    connection.data_send_process()
    # What grpclib.server.Stream.send_message does after the write.
    stream._send_message_done = True
    stream._messages_sent += 1
    connection.messages_sent += 1
    connection.last_message_sent = time.monotonic()
    return True


#: An HTTP/2 frame header: length (24 bits, as 16 + 8), type, flags, stream id (hyperframe's).
_FRAME_HEADER = struct.Struct(">HBBBL")
_DATA_FRAME = 0x0
#: The states in which sending DATA leaves an h2 stream or connection as it is.
_SENDING_STREAM = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)


def _send_data(connection: Any, stream_id: int, data: bytes) -> None:
    """``connection.send_data(stream_id, data)`` (h2), its window and frame size already
    checked: one DATA frame, neither padded nor ending the stream. h2 makes two state machine
    transitions that leave both states as they are, builds a frame object and serializes it,
    and writes three debug lines to a logger that discards them: about 8 µs per response, done
    here in one. Anything else (a real logger, another state) goes through h2."""
    stream = connection.streams.get(stream_id)
    if (
        stream is None
        or type(connection.config.logger) is not DummyLogger
        or connection.state_machine.state is not ConnectionState.SERVER_OPEN
        or stream.state_machine.state not in _SENDING_STREAM
    ):
        connection.send_data(stream_id, data, end_stream=False)
        return
    size = len(data)
    connection._data_to_send += (
        _FRAME_HEADER.pack(
            (size >> 8) & 0xFFFF, size & 0xFF, _DATA_FRAME, 0, stream_id & 0x7FFFFFFF
        )
        + data
    )
    stream.outbound_flow_control_window -= size
    connection.outbound_flow_control_window -= size
