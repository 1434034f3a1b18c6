"""Finding a store by name through the ``kuma.stores`` entry-point group.

A store plugin is a package that declares, in its own metadata::

    [project.entry-points."kuma.stores"]
    mystore = "mypackage:open_my_store"

where ``open_my_store(options: Mapping[str, Any])`` returns an async context manager that yields
a :class:`~kuma.store.protocol.Store`. ``options`` is the ``store.<name>`` section of kuma-cp's
configuration. Nothing is imported until a store is asked for by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from importlib.metadata import entry_points
from typing import Any, cast

from .errors import StoreConfigError
from .protocol import Store

ENTRY_POINT_GROUP = "kuma.stores"

StoreFactory = Callable[[Mapping[str, Any]], AbstractAsyncContextManager[Store]]


def available_stores() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def store_factory(name: str) -> StoreFactory:
    """The factory registered as ``name``; StoreConfigError naming the installed ones if none."""
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        raise StoreConfigError(
            f"store.type: unknown store {name!r}; installed: {', '.join(available_stores())}"
        )
    try:
        return cast(StoreFactory, matches[0].load())
    except (ImportError, AttributeError) as exc:
        raise StoreConfigError(
            f"store.type: the store plugin {name!r} cannot be loaded: {exc}"
        ) from exc


def open_store(name: str, options: Mapping[str, Any]) -> AbstractAsyncContextManager[Store]:
    return store_factory(name)(options)
