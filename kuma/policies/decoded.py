"""A listener's typed network filters (HTTP connection manager, TCP proxy) decoded once while
several policy plugins edit them, and packed back once when they are done.

Every plugin edits a filter through ``update_hcm`` / ``update_tcp_proxy`` (``plugin.py``).
Unpacking the ``Any`` and packing it again for each plugin was about 10 % of a policy
change's CPU (benchmarks/RESULTS.md, issue 16). Inside a ``with DecodedFilters():`` block the
first edit of a chain's filter decodes it, later edits reuse that message, and the block's end
packs each decoded filter once. A builder holding a filter it has not packed yet hands it over with
:func:`add_filter` (no pack and parse at all). Outside a block every edit unpacks and packs at
once, as before.

Code that removes, replaces or reorders a chain's filters inside a block calls :func:`settle`
on the chain first (it packs and forgets the chain's decoded filters). A decoded filter whose
``Any`` has left its chain raises instead of being lost silently.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any, NamedTuple

from envoy.config.listener.v3.listener_components_pb2 import FilterChain as Chain
from google.protobuf.message import Message

TYPE_PREFIX = "type.googleapis.com/"


class _Decoded(NamedTuple):
    # The chain is held so that its id (part of the key) cannot be reused while open.
    chain: Chain
    packed: Any
    message: Any


#: The open block's decoded filters by (id of the chain, type URL); None outside a block.
_OPEN: ContextVar[dict[tuple[int, str], _Decoded] | None] = ContextVar(
    "decoded_filters", default=None
)


class FilterReplaced(RuntimeError):
    """A chain's filters were replaced while one of them was decoded (call ``settle`` first)."""


class DecodedFilters:
    """Edits of filters inside the block share one decoded message per filter, packed at the
    end (a block opened inside another joins it). A class, not ``@contextmanager``: it is
    entered once per listener a policy shapes, and the generator-based one cost 5 % of a
    policy change."""

    __slots__ = ("_opened", "_token")

    def __enter__(self) -> None:
        if _OPEN.get() is not None:
            self._token: Token[dict[tuple[int, str], _Decoded] | None] | None = None
            return
        self._opened: dict[tuple[int, str], _Decoded] = {}
        self._token = _OPEN.set(self._opened)

    def __exit__(self, error: type[BaseException] | None, *_: object) -> None:
        if self._token is None:
            return
        try:
            if error is None:
                for decoded in self._opened.values():
                    _pack(decoded)
        finally:
            _OPEN.reset(self._token)


def _current(chain: Chain, type_url: str) -> Any:
    for network_filter in chain.filters:
        packed = network_filter.typed_config
        if packed.type_url == type_url:
            return packed
    return None


def edit(chain: Chain, cls: Any, change: Callable[[Any], None]) -> bool:
    """Apply ``change`` to the chain's first filter of message type ``cls``; False if none."""
    type_url = TYPE_PREFIX + cls.DESCRIPTOR.full_name
    packed = _current(chain, type_url)
    if packed is None:
        return False
    opened = _OPEN.get()
    if opened is None:
        message = cls()
        message.ParseFromString(packed.value)
        change(message)
        packed.value = message.SerializeToString(deterministic=True)
        return True
    key = (id(chain), type_url)
    decoded = opened.get(key)
    if decoded is None:
        message = cls()
        message.ParseFromString(packed.value)
        decoded = opened[key] = _Decoded(chain, packed, message)
    elif decoded.packed is not packed:
        raise FilterReplaced(f"the {cls.DESCRIPTOR.name} of a filter chain was replaced")
    change(decoded.message)
    return True


def add_filter(chain: Chain, name: str, message: Message) -> None:
    """Append ``message`` as the chain's filter ``name``: handed to the open block still
    decoded (packed at its end), or packed now outside a block."""
    added = chain.filters.add(name=name)
    packed = added.typed_config
    packed.type_url = TYPE_PREFIX + message.DESCRIPTOR.full_name
    opened = _OPEN.get()
    if opened is None:
        packed.value = message.SerializeToString(deterministic=True)
        return
    opened[(id(chain), packed.type_url)] = _Decoded(chain, packed, message)


def settle(chain: Chain) -> None:
    """Pack the chain's decoded filters now and forget them: call before removing, replacing
    or reordering the chain's filters inside a block."""
    opened = _OPEN.get()
    if not opened:
        return
    for key in [key for key in opened if key[0] == id(chain)]:
        _pack(opened.pop(key))


def _pack(decoded: _Decoded) -> None:
    if not any(f.typed_config is decoded.packed for f in decoded.chain.filters):
        raise FilterReplaced(
            f"the {decoded.message.DESCRIPTOR.name} of a filter chain was replaced while decoded"
        )
    decoded.packed.value = decoded.message.SerializeToString(deterministic=True)
