"""The store room: the Store protocol, change events, errors, the memory store and plugin lookup."""

from __future__ import annotations

from .errors import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    StoreConfigError,
    StoreError,
    StoreUnavailableError,
)
from .protocol import (
    NotifiesProblems,
    Operation,
    Problem,
    ResourceEvent,
    ResourcePage,
    Store,
    Synced,
    WatchItem,
)
from .registry import ENTRY_POINT_GROUP, available_stores, open_store, store_factory

__all__ = [
    "ENTRY_POINT_GROUP",
    "AlreadyExistsError",
    "ConflictError",
    "NotFoundError",
    "NotifiesProblems",
    "Operation",
    "Problem",
    "ResourceEvent",
    "ResourcePage",
    "Store",
    "StoreConfigError",
    "StoreError",
    "StoreUnavailableError",
    "Synced",
    "WatchItem",
    "available_stores",
    "open_store",
    "store_factory",
]
