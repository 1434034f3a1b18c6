"""HPACK Huffman decoding a byte at a time instead of a nibble at a time.

Every ADS stream opens with a HEADERS frame whose ``authorization`` value is the proxy's
dataplane token: ~600 bytes, Huffman-coded by Envoy (and grpclib), so ~450 bytes on the wire.
hpack (pure Python) decodes Huffman strings with nghttp2's nibble state machine: two table
look-ups, two flag tests and up to two appends per byte, ~135 µs for that one header, about
a tenth of the transport's whole CPU per new connection (benchmarks/bench_connect.py).

:func:`decode_huffman` runs the same state machine composed into whole bytes: one look-up
of the next state and one of the bytes emitted (none, one or two symbols) per input byte.
The table is built once, from hpack's own nibble table, so it decodes exactly what hpack
decodes and rejects exactly what it rejects (an invalid code, EOS, padding that is not a
prefix of EOS, all ``HPACKDecodingError``): a failed transition leads to a sink state that
never accepts. It costs ~1 MB per process (two lists of 257 by 256 entries, the emitted
strings shared) and ~50 ms to build, at :func:`install`.

:func:`install` puts it in place of ``hpack.hpack.decode_huffman``, the module global hpack's
``Decoder`` calls (hpack 4.x). A private name of another package: if hpack's layout differs
(no such global, a nibble table of another shape, or a self-check that does not decode as
hpack does), nothing is replaced and hpack keeps its own decoder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Decode = Callable[[Any], bytes]

#: hpack's nibble state machine: 256 states by 16 nibbles of (next state, flags, symbol).
_NIBBLE_STATES = 256
_COMPLETE, _EMIT, _FAIL = 1, 2, 4
#: The state a failed transition leads to (premultiplied by 256 like every other).
_SINK = _NIBBLE_STATES << 8


class _ByteTable:
    """Per (state, byte): the next state (premultiplied by 256), the bytes emitted, whether
    the string may end there."""

    __slots__ = ("complete", "emitted", "next")

    def __init__(self, nibbles: list[tuple[int, int, int]]) -> None:
        size = (_NIBBLE_STATES + 1) << 8
        self.next: list[int] = [_SINK] * size
        self.emitted: list[bytes] = [b""] * size
        self.complete = bytearray(size)
        states = [s << 8 for s in range(_NIBBLE_STATES + 1)]  # the ints, shared by the table
        singles = [bytes([b]) for b in range(256)]
        # What the low nibble does from each state: 16 entries of each list per state.
        low_next: list[list[int]] = []
        low_emitted: list[list[bytes]] = []
        low_complete: list[bytes] = []
        for state in range(_NIBBLE_STATES):
            row = nibbles[state * 16 : state * 16 + 16]
            low_next.append([_SINK if f & _FAIL else states[end] for end, f, _ in row])
            low_emitted.append(
                [singles[b] if f & _EMIT and not f & _FAIL else b"" for _, f, b in row]
            )
            low_complete.append(bytes(f & _COMPLETE if not f & _FAIL else 0 for _, f, _ in row))
        pairs: dict[tuple[int, bytes], bytes] = {}
        for state in range(_NIBBLE_STATES):
            for high in range(16):
                middle, flags, first = nibbles[state * 16 + high]
                if flags & _FAIL:
                    continue  # the sink's defaults
                at = (state << 8) | (high << 4)
                self.next[at : at + 16] = low_next[middle]
                self.complete[at : at + 16] = low_complete[middle]
                if not flags & _EMIT:
                    self.emitted[at : at + 16] = low_emitted[middle]
                    continue
                emitted = []
                for then in low_emitted[middle]:
                    pair = pairs.get((first, then))
                    if pair is None:
                        pair = pairs[first, then] = singles[first] + then
                    emitted.append(pair)
                self.emitted[at : at + 16] = emitted


def byte_decoder(nibbles: list[tuple[int, int, int]], error: type[Exception]) -> Decode:
    """A Huffman decoder equivalent to hpack's over its nibble table ``nibbles``, raising
    ``error`` where hpack raises ``HPACKDecodingError``."""
    table = _ByteTable(nibbles)
    following, emitted, complete = table.next, table.emitted, table.complete

    def decode_huffman(huffman_string: Any) -> bytes:
        if not huffman_string:
            return b""
        state = index = 0
        decoded = bytearray()
        for byte in huffman_string:
            index = state | byte
            state = following[index]
            decoded += emitted[index]
        if state == _SINK:
            raise error("Invalid Huffman string")
        if not complete[index]:
            raise error("Incomplete Huffman string")
        return bytes(decoded)

    return decode_huffman


#: Strings the installed decoder must decode exactly as hpack's own before it is used: the
#: characters of tokens, paths and header names, and every byte value (long codes).
_SELF_CHECK = (
    b"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.e30-_~",
    b"/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
    bytes(range(256)),
    bytes(range(255, -1, -1)) * 2,
)


def install() -> bool:
    """Decode HPACK Huffman strings with the byte table from now on (this process); True if
    it is (or already was) in place, False if hpack's layout is not the one this knows."""
    try:
        import hpack.hpack as hpack_module
        from hpack import huffman_table
        from hpack.exceptions import HPACKDecodingError
        from hpack.huffman import HuffmanEncoder
        from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
    except ImportError:
        return False
    current = getattr(hpack_module, "decode_huffman", None)
    if getattr(current, "__module__", None) == __name__:
        return True
    nibbles = getattr(huffman_table, "HUFFMAN_TABLE", None)
    original = getattr(huffman_table, "decode_huffman", None)
    if (
        current is None
        or current is not original
        or not isinstance(nibbles, list)
        or len(nibbles) != _NIBBLE_STATES * 16
        or not all(isinstance(entry, tuple) and len(entry) == 3 for entry in nibbles)
    ):
        log.debug("hpack's Huffman decoder left in place: unknown layout")
        return False
    decoder = byte_decoder(nibbles, HPACKDecodingError)
    encoder = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    for text in _SELF_CHECK:
        encoded = encoder.encode(text)
        if decoder(encoded) != original(encoded):
            log.debug("hpack's Huffman decoder left in place: self-check differs")
            return False
    setattr(hpack_module, "decode_huffman", decoder)  # noqa: B010 (not exported by hpack)
    return True
