"""A :class:`~kuma.xds.source.ConfigSource`'s ``watch_proxy`` context in one slotted object.

Every connected proxy's stream holds its ``watch_proxy`` context open for the stream's whole
life. Written as ``@asynccontextmanager`` generators, the composite source's (with an
``AsyncExitStack``: a 760-byte deque and its callbacks), the engine's and the SDS source's
contexts kept three generator frames, their context-manager objects and their argument tuples
and dicts alive: ~3.5 KB of every connected proxy (tracemalloc at 1,000 sidecars,
benchmarks/RESULTS.md). :class:`WatchContext` opens the watch on entry and closes it on exit;
:func:`enter_all` / :func:`exit_all` do what the exit stack did for the composite source's
members: leave them in reverse order, each seeing the exception the later ones left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Generic, TypeVar

W = TypeVar("W")


class WatchContext(Generic[W]):
    """``async with``: ``open(node_id, metadata)`` on entry (its watch is what ``as`` gets),
    ``close(watch)`` on exit, whatever the exit."""

    __slots__ = ("_close", "_metadata", "_node_id", "_open", "_watch")

    def __init__(
        self,
        open_watch: Callable[[str, Any], W],
        close_watch: Callable[[W], None],
        node_id: str,
        metadata: Any = None,
    ) -> None:
        self._open = open_watch
        self._close = close_watch
        self._node_id = node_id
        self._metadata = metadata
        self._watch: W | None = None

    async def __aenter__(self) -> W:
        watch = self._watch = self._open(self._node_id, self._metadata)
        return watch

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            self._close(watch)


async def enter(context: AbstractAsyncContextManager[W], entered: list[Any]) -> W:
    """Enter ``context`` and remember it in ``entered`` (for :func:`exit_all`)."""
    value = await context.__aenter__()
    entered.append(context)
    return value


async def exit_all(entered: Sequence[Any], exc: BaseException | None) -> bool:
    """Leave the ``entered`` contexts, last first, as ``AsyncExitStack`` does: each sees the
    exception pending after the later ones (one may suppress it, or raise another, which the
    earlier ones then see and which is raised at the end). True when ``exc`` was suppressed."""
    pending = exc
    raised = False
    for context in reversed(entered):
        try:
            details = (
                (type(pending), pending, pending.__traceback__)
                if pending is not None
                else (None,) * 3
            )
            if await context.__aexit__(*details):
                pending = None
        except BaseException as error:
            if pending is not None and error is not pending and error.__context__ is None:
                error.__context__ = pending
            pending, raised = error, True
    if raised and pending is not None:
        raise pending
    return exc is not None and pending is None
