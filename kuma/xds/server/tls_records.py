"""Where the TLS records in a received byte stream end, read from their 5-byte headers.

The dp server's TLS layer (kuma/xds/server/tls.py) moves received bytes into OpenSSL in 1 KiB
slices, to keep the incoming memory BIO small. Asking OpenSSL for plain text after a slice that
did not complete a record is wasted: it raises ``SSLWantReadError``, about 1.6 µs each, 60 times
for the 61 KB first request of every proxy (a 16 KiB record spans 16 slices). Knowing where the
records end, the layer asks only once a record is complete.

Every TLS record (TLS 1.2 and 1.3, handshake included) starts with a header: content type
(1 byte), legacy version (2), length of what follows (2). If what arrives does not look like
that (another content type, a length beyond what TLS allows), tracking stops for the connection
and the caller asks OpenSSL after every slice again, as before: OpenSSL then reports the error.
"""

from __future__ import annotations

#: change_cipher_spec, alert, handshake, application_data, heartbeat.
_CONTENT_TYPES = frozenset((20, 21, 22, 23, 24))
_HEADER = 5
#: The longest record body TLS allows (TLS 1.2's 2^14 + 2048 of ciphertext; TLS 1.3 is less).
MAX_RECORD = 2**14 + 2048


class RecordBoundaries:
    """The record boundaries of one connection's received bytes, fed in order."""

    __slots__ = ("_header", "_left", "tracking")

    def __init__(self) -> None:
        #: Bytes of the current record's body still to come.
        self._left = 0
        #: The first bytes of a header split between two reads.
        self._header = b""
        #: False once the stream did not look like TLS records.
        self.tracking = True

    def ends(self, data: memoryview) -> list[int] | None:
        """The offsets in ``data`` just past the end of each record completed in it, in order;
        None if the stream stopped looking like TLS records (from now on, for good)."""
        if not self.tracking:
            return None
        size = len(data)
        if not self._left and not self._header and size >= _HEADER:
            # The common case first: data is exactly one whole record (an ACK).
            length = data[3] << 8 | data[4]
            if length + _HEADER == size and data[0] in _CONTENT_TYPES:
                return [size]
        ends: list[int] = []
        position = 0
        while position < size:
            if self._left:
                taken = min(self._left, size - position)
                position += taken
                self._left -= taken
                if not self._left:
                    ends.append(position)
                continue
            if self._header or size - position < _HEADER:
                # A header split between reads: kept until its last byte arrives.
                wanted = _HEADER - len(self._header)
                header = self._header + bytes(data[position : position + wanted])
                position += wanted
                if len(header) < _HEADER:
                    self._header = header
                    break
                self._header = b""
                kind, length = header[0], header[3] << 8 | header[4]
            else:
                kind, length = data[position], data[position + 3] << 8 | data[position + 4]
                position += _HEADER
            if kind not in _CONTENT_TYPES or length > MAX_RECORD:
                self.tracking = False
                return None
            self._left = length
            if not length:
                ends.append(position)
        return ends
