"""Errors a store raises. Callers (API, registration) map them to HTTP codes and messages."""

from __future__ import annotations

from kuma.resources import ResourceKey


class StoreError(Exception):
    """Base class of store failures."""


class NotFoundError(StoreError):
    def __init__(self, key: ResourceKey) -> None:
        self.key = key
        super().__init__(f"{key} not found")


class ConflictError(StoreError):
    """A write lost an optimistic-concurrency race: the resource changed, or already exists."""

    def __init__(self, key: ResourceKey, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


class AlreadyExistsError(ConflictError):
    def __init__(self, key: ResourceKey) -> None:
        super().__init__(key, "already exists")


class StoreUnavailableError(StoreError):
    """The backing service (etcd, the file system) cannot be reached or refused the operation."""


class StoreConfigError(StoreError):
    """The store's configuration is wrong; the message names the key."""
