"""A connected proxy's transport objects in less memory: idle deques become small lists, and
per-connection dispatch tables of bound methods become one shared table.

Every ADS connection carries about 26 ``collections.deque`` objects that grpclib, h2, hpack and
asyncio create per connection and per stream: h2 keeps each HTTP/2 setting of both peers in a
deque of its own (about 14), hpack its two header tables, grpclib's stream buffer an
``asyncio.Queue`` (three deques and an ``Event``) plus one, and five ``asyncio.Event`` objects
(one deque each). A deque always allocates a 64-slot block: 760 bytes each, about 20 KB per
connected proxy (a gc census at 2,000 sidecars, benchmarks/RESULTS.md), almost all of them
holding one item or none for the connection's whole life.

:func:`compact_stream` swaps each for a :class:`SmallDeque`: a list (56 bytes empty) with the
two deque methods those libraries call (``popleft``, ``appendleft``; every other call they make
is one a list has). Their queues hold a handful of items at most (a setting's pending values,
one waiter, the few chunks of a request between reads, the dynamic header table's dozens of
entries), so a list's O(n) ends cost nothing measurable. An attribute that is missing or not a
deque (another library version) is left alone: the swap only ever saves memory.

h2 and grpclib also each build a dispatch table of bound methods per connection
(:class:`BoundOnLookup`, 2.9 KB per connection together).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class SmallDeque(list[T]):
    """The part of ``collections.deque``'s interface that asyncio, h2, hpack and grpclib use."""

    __slots__ = ()

    def popleft(self) -> T:
        if not self:
            raise IndexError("pop from an empty deque")
        return self.pop(0)

    def appendleft(self, item: T) -> None:
        self.insert(0, item)


def _swap(owner: Any, name: str) -> None:
    current = getattr(owner, name, None)
    if type(current) is deque and current.maxlen is None:
        setattr(owner, name, SmallDeque(current))


def _event(event: Any) -> None:
    _swap(event, "_waiters")


def _queue(queue: Any) -> None:
    for name in ("_getters", "_putters", "_queue"):
        _swap(queue, name)
    _event(getattr(queue, "_finished", None))


def _settings(settings: Any) -> None:
    values = getattr(settings, "_settings", None)
    if isinstance(values, dict):
        for key, value in values.items():
            if type(value) is deque and value.maxlen is None:
                values[key] = SmallDeque(value)


class BoundOnLookup:
    """A dispatch table ``{key: owner.method}`` that binds the method when looked up, over one
    ``{key: function}`` shared by every owner of the class: h2 (frame type to handler) and
    grpclib (event type to handler) each build one per connection, 12 and 13 bound methods
    (64 bytes each) in a dict (~650 bytes), 2.9 KB per connection together. A lookup costs one
    binding (tens of nanoseconds), once per received frame or event."""

    __slots__ = ("_functions", "_owner")

    def __init__(self, owner: object, functions: dict[Any, Callable[..., Any]]) -> None:
        self._owner = owner
        self._functions = functions

    def __getitem__(self, key: Any) -> Callable[..., Any]:
        return self._functions[key].__get__(self._owner)  # type: ignore[no-any-return]


#: One function table per (owner class, attribute), shared by every connection.
_tables: dict[tuple[type, str], dict[Any, Callable[..., Any]]] = {}


def _share_table(owner: Any, name: str) -> None:
    table = getattr(owner, name, None)
    if type(table) is not dict:
        return
    functions = {}
    for key, method in table.items():
        if getattr(method, "__self__", None) is not owner:
            return  # not a table of the owner's own methods: left as it is
        functions[key] = method.__func__
    shared = _tables.setdefault((type(owner), name), functions)
    setattr(owner, name, BoundOnLookup(owner, shared if shared == functions else functions))


def _protocol(connection: Any) -> Any:
    """The connection's asyncio protocol (grpclib's ``H2Protocol``), if its transport says."""
    transport = getattr(connection, "_transport", None)
    try:
        return transport.get_protocol() if transport is not None else None
    except NotImplementedError:  # a transport that does not tell (asyncio's base class)
        return None


def compact_stream(stream: Any) -> None:
    """Swap the deques of a grpclib server stream (``grpclib.server.Stream``), its HTTP/2
    stream and its connection for :class:`SmallDeque`, and its connection's dispatch tables for
    :class:`BoundOnLookup` (idempotent: a second stream on the same connection finds the
    connection's already swapped)."""
    inner = getattr(stream, "_stream", None)
    if inner is None:
        return
    for name in ("window_updated", "headers_received", "trailers_received"):
        _event(getattr(inner, name, None))
    buffer = getattr(inner, "buffer", None)
    _queue(getattr(buffer, "_unacked", None))
    _swap(buffer, "_acked")
    connection = getattr(inner, "connection", None)
    for name in ("write_ready", "stream_close_waiter"):
        _event(getattr(connection, name, None))
    h2 = getattr(connection, "_connection", None)
    _share_table(h2, "_frame_dispatch_table")
    _share_table(getattr(_protocol(connection), "processor", None), "processors")
    _settings(getattr(h2, "local_settings", None))
    _settings(getattr(h2, "remote_settings", None))
    for coder in (getattr(h2, "encoder", None), getattr(h2, "decoder", None)):
        _swap(getattr(coder, "header_table", None), "dynamic_entries")
