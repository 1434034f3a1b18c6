"""A served stream lets go of its request's headers once they have been used.

grpclib's server runs each stream's handler inside ``grpclib.server.request_handler``, which
keeps the request's headers for the stream's whole life in its local variables: the decoded
header list (``headers``: ~10 ``HeaderTuple`` and their strings), a ``dict`` of them
(``headers_map``) and the call's metadata (a ``MultiDict``, also ``stream.metadata``). An ADS
stream lives as long as its proxy is connected, and its headers carry the dataplane token
(~600 bytes for Kuma's tokens), so a connected proxy kept ~2-3 KB of headers nobody reads after
the stream was authenticated (tracemalloc at 2,000 sidecars, benchmarks/RESULTS.md).

:func:`release_request_headers` empties those three containers in place once the stream is
authenticated: grpclib reads none of them after it called the handler (checked against grpclib
0.4.x's ``request_handler``; its frame's locals are reached as the referents of the task's
coroutine at the loop's next turn, when it is suspended, without materialising a frame object;
the metadata, which the authenticator has read, at once). Whatever does not look as expected (a
handler not run by ``request_handler``, another grpclib version, a test's fake stream) is left
alone: the release only ever saves memory.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from grpclib.server import request_handler as _request_handler

_HANDLER_CODE = _request_handler.__code__


def _is_header_list(value: object) -> bool:
    """grpclib's ``headers``: a list of (name, value) pairs with the request's pseudo-headers."""
    if type(value) is not list or not value:
        return False
    names = set()
    for item in value:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        names.add(item[0])
    return ":path" in names and ":method" in names


def _is_header_map(value: object) -> bool:
    """grpclib's ``headers_map``: ``dict(headers)``."""
    return type(value) is dict and ":path" in value and ":method" in value


def _handler_coroutine() -> Any:
    """The running task's ``request_handler`` coroutine, or None when the current task is not
    one grpclib started for a request."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return None
    coro = task.get_coro() if task is not None else None
    if getattr(coro, "cr_code", None) is not _HANDLER_CODE:
        return None
    return coro


def _empty_headers(coro: Any) -> None:
    # A suspended coroutine's referents include its frame's locals (a running one's need not).
    for value in gc.get_referents(coro):
        if _is_header_list(value) or _is_header_map(value):
            value.clear()


def release_request_headers(stream: Any) -> None:
    """Empty the request's headers and metadata the stream's grpclib frame still holds (call
    it from the stream's own task, once the metadata has been read). The header list and map
    are emptied at the loop's next turn, when the task is suspended."""
    metadata = getattr(stream, "metadata", None)
    clear = getattr(metadata, "clear", None)
    if callable(clear):
        clear()
    coro = _handler_coroutine()
    if coro is not None:
        asyncio.get_running_loop().call_soon(_empty_headers, coro)
