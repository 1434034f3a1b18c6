"""KDS's ``maxMsgSize`` (``multizone.global.kds.maxMsgSize`` on global,
``multizone.zone.kds.maxMsgSize`` on a zone; Kuma's default 10 MiB): no KDS message larger
than that is sent or taken, on either stream.

- Sending: the offering side splits a type's changes over several responses that each fit
  (``DeltaProtocol(max_response_bytes=...)``, kuma/xds/server/chunks.py); a single resource
  larger than the limit is left out and logged. The codec checks every message once more
  and ends the stream with RESOURCE_EXHAUSTED rather than send one that does not fit.
- Taking: a larger message ends the stream with RESOURCE_EXHAUSTED, naming both sizes (as
  gRPC's own limit does; grpclib has none). grpclib reads a message whole before decoding
  it, so the limit bounds what is decoded and stored, not what one message may buffer.

Both ends should have the same limit (Kuma's advice too): a zone whose limit is above
global's may send a message global refuses, and the stream then ends on every connection.
"""

from __future__ import annotations

from typing import Any

from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError

#: Kuma's default for both ends.
DEFAULT_MAX_MSG_SIZE = 10 * 1024 * 1024


class SizeLimitedCodec(ProtoCodec):
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def encode(self, message: Any, message_type: Any) -> bytes:
        data = super().encode(message, message_type)
        if len(data) > self.max_bytes:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"KDS: not sending a {message_type.__name__} of {len(data)} bytes: more than "
                f"maxMsgSize ({self.max_bytes} bytes)",
            )
        return data

    def decode(self, data: bytes, message_type: Any) -> Any:
        if len(data) > self.max_bytes:
            # Logged by whoever ends the stream (kuma/kds/server.py, client.py).
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"KDS: received a {message_type.__name__} of {len(data)} bytes: more than "
                f"maxMsgSize ({self.max_bytes} bytes)",
            )
        return super().decode(data, message_type)
