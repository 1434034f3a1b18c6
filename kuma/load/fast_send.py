"""A sidecar's requests written straight to its HTTP/2 connection: the same bytes on the wire
as grpclib's ``Stream.send_message``, without its per-message machinery.

A simulated sidecar sends one ACK per response; in a fan-out the workers spent about a quarter
of their CPU in grpclib's send path (py-spy at 2,000 sidecars), about a fifth of it grpclib's
own layers (event dispatch coroutine, context wrapper, ``BytesIO`` chunking, statistics) above
h2 and the TLS transport. :func:`try_send` does what that path ends in for a message that fits
the peer's flow-control window and one frame (every ACK does): h2 ``send_data`` of the 5-byte
gRPC prefix and the message, and one write of h2's output. Anything else (the 61 KB first
request, a full window, a paused or closing transport, a stream h2 refuses) returns False and
the caller takes grpclib's own path, which waits, chunks or raises as it always did.

grpclib exposes no public way to this: the client stream's protocol stream (``_stream``) and
its h2 connection and transport are private names, read with ``getattr`` and checked, so a
grpclib that renames them only makes every send take the slow path (tests/load/test_fast_send.py
checks the fast path is taken with the grpclib pinned here).

"""

from __future__ import annotations

from typing import Any

from h2.exceptions import H2Error

_PREFIX = b"\x00"  # gRPC message prefix: not compressed, then the 4-byte big-endian length.


def try_send(stream: Any, message: Any) -> bool:
    """Send one message on a grpclib client stream if it can go at once, whole; False
    (nothing sent) if it must take grpclib's ``send_message``. The message is serialized
    only once the stream is known to take it (the first request never is)."""
    inner = getattr(stream, "_stream", None)
    if inner is None or not getattr(stream, "_send_request_done", False):
        return False
    if getattr(stream, "_end_done", True):
        return False
    stream_id = getattr(inner, "id", None)
    h2 = getattr(inner, "_h2_connection", None)
    transport = getattr(inner, "_transport", None)
    connection = getattr(inner, "connection", None)
    if stream_id is None or h2 is None or transport is None or connection is None:
        return False
    if not connection.write_ready.is_set() or transport.is_closing():
        return False
    payload: bytes = message.SerializeToString()
    data = _PREFIX + len(payload).to_bytes(4, "big") + payload
    try:
        if len(data) > min(h2.local_flow_control_window(stream_id), h2.max_outbound_frame_size):
            return False
        h2.send_data(stream_id, data)
    except H2Error:
        return False
    transport.write(h2.data_to_send())
    return True
