"""The text of a received HTTP/2 frame, at the cost of its first bytes instead of its size.

h2 formats every frame it receives for a trace line before its logger decides whether to write
it (``H2Connection._receive_frame``: ``logger.trace("Received frame: %s", repr(frame))``, and
grpclib's logger writes nothing). hyperframe's repr of a frame's payload hex-encodes the whole
payload only to show its first ten bytes: 32 KB of text for each 16 KB DATA frame, four of them
for the 61 KB first request of every connecting Envoy (about 2.4 % of kuma-cp's CPU while
sidecars converge, py-spy at 2,000 sidecars). :func:`install` swaps in a helper that encodes
the first eleven bytes: the same text for every payload (tests/xds/test_frame_repr.py compares
the two), so the trace line, were it ever written, is unchanged.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable

import hyperframe.frame

Payload = bytes | bytearray | memoryview | None

#: hyperframe's own helper, kept for the comparison test; None if a release no longer has it.
ORIGINAL: Callable[[Payload], str] | None = getattr(hyperframe.frame, "_raw_data_repr", None)

#: Hex characters shown before "..." (hyperframe's rule): ten bytes, so eleven tell whether
#: the payload is longer.
_SHOWN = 20


def raw_data_repr(data: Payload) -> str:
    """hyperframe's ``_raw_data_repr`` without encoding what it cuts off."""
    if not data:
        return "None"
    text = binascii.hexlify(data[: _SHOWN // 2 + 1]).decode("ascii")
    if len(text) > _SHOWN:
        text = text[:_SHOWN] + "..."
    return "<hex:" + text + ">"


def install() -> None:
    """Make hyperframe's frames use :func:`raw_data_repr` (process-wide, idempotent). A
    hyperframe without the helper is left as it is: only the cost would differ."""
    if ORIGINAL is not None:
        hyperframe.frame._raw_data_repr = raw_data_repr
