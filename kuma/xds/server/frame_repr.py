"""The text of a received HTTP/2 frame, at the cost of its first bytes instead of its size.

h2 formats every frame it receives for a trace line before its logger decides whether to write
it (``H2Connection._receive_frame``: ``logger.trace("Received frame: %s", repr(frame))``, and
grpclib's logger writes nothing). hyperframe's repr of a frame's payload hex-encodes the whole
payload only to show its first ten bytes: 32 KB of text for each 16 KB DATA frame, four of them
for the 61 KB first request of every connecting Envoy (about 2.4 % of kuma-cp's CPU while
sidecars converge, py-spy at 2,000 sidecars). :func:`install` swaps in a helper that encodes
the first eleven bytes: the same text for every payload (tests/xds/test_frame_repr.py compares
the two), so the trace line, were it ever written, is unchanged.

Even so, the text of each received frame cost 1.7 µs (WINDOW_UPDATE) to 4.7 µs (DATA), for a
line grpclib's logger never writes: a fan-out reads an ACK's DATA frame and the client's
WINDOW_UPDATEs per proxy. So :func:`install` also gives h2's connection module its own ``repr``
(the one call of it there is that trace line's argument): a :class:`DeferredRepr`, which costs
an object and becomes hyperframe's text when a logger formats it (``%s``), so a real h2 logger
writes exactly the same line.
"""

from __future__ import annotations

import binascii
import inspect
from collections.abc import Callable

import h2.connection
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


class DeferredRepr:
    """``repr(thing)``, computed when formatted as text (``str``), not when made."""

    __slots__ = ("_thing",)

    def __init__(self, thing: object) -> None:
        self._thing = thing

    def __str__(self) -> str:
        return repr(self._thing)

    __repr__ = __str__


#: The only use of ``repr`` in h2's connection module that the deferral is made for.
_TRACE_LINE = 'self.config.logger.trace("Received frame: %s", repr(frame))'


def _defers_safely() -> bool:
    """Whether every ``repr(`` in h2's connection module is the received frame's trace line (a
    ``repr`` result used as a string anywhere else would break with the deferral)."""
    try:
        source = inspect.getsource(h2.connection)
    except (OSError, TypeError):
        return False
    return source.count("repr(") == source.count(_TRACE_LINE) == 1


def install() -> None:
    """Make hyperframe's frames use :func:`raw_data_repr`, and h2's received-frame trace line
    format its frame only if written (process-wide, idempotent). A hyperframe without the
    helper, or an h2 whose module uses ``repr`` otherwise, is left as it is: only the cost
    would differ."""
    if ORIGINAL is not None:
        hyperframe.frame._raw_data_repr = raw_data_repr
    if getattr(h2.connection, "repr", None) is None and _defers_safely():
        h2.connection.repr = DeferredRepr  # type: ignore[attr-defined]
