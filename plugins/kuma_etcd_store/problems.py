"""Values under the resource prefix that are not valid resources, and decoding that finds them.

A key with an invalid value (written by hand, by another tool, by a newer version) is skipped
by every read and every watch, and listed by ``Store.problems()`` until it is fixed, deleted or
gone from a re-listing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import anyio.lowlevel

from kuma.resources import StoredResource
from kuma.store import Problem

from .layout import InvalidEntry, KeyLayout, decode_value

log = logging.getLogger(__name__)

_DECODE_BATCH = 500


class ProblemBook:
    def __init__(self) -> None:
        self._problems: dict[str, Problem] = {}
        #: Told when ``problems()`` changes (the GUI shows a bad value as it is written).
        self._listeners: list[Callable[[], None]] = []

    def problems(self) -> Sequence[Problem]:
        return [self._problems[where] for where in sorted(self._problems)]

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` after each change; returns the function that stops it."""
        listeners = self._listeners
        listeners.append(callback)
        return lambda: listeners.remove(callback) if callback in listeners else None

    def _changed(self) -> None:
        for listener in tuple(self._listeners):
            listener()

    def report(self, key: bytes, reason: str) -> None:
        where = key.decode(errors="replace")
        if self._problems.get(where) != Problem(where, reason):
            log.warning("etcd key %s is not a valid resource, skipped: %s", where, reason)
            self._problems[where] = Problem(where, reason)
            self._changed()

    def clear(self, key: bytes) -> None:
        if self._problems.pop(key.decode(errors="replace"), None) is not None:
            self._changed()

    def retain(self, present: set[bytes]) -> None:
        """Forget the problems of keys that are gone (the whole prefix was re-listed)."""
        keep = {key.decode(errors="replace") for key in present}
        gone = [where for where in self._problems if where not in keep]
        for where in gone:
            del self._problems[where]
        if gone:
            self._changed()


class ResourceDecoder:
    """Key-values read from etcd → stored resources, reporting the invalid ones."""

    def __init__(self, layout: KeyLayout, book: ProblemBook) -> None:
        self.layout = layout
        self.book = book

    def decode(self, raw: Any) -> StoredResource | None:
        """The resource in a key-value read from etcd; None (and a problem) if it is invalid."""
        try:
            stored = decode_value(self.layout.parse(raw.key), raw.value, raw.mod_revision)
        except InvalidEntry as exc:
            self.book.report(raw.key, exc.reason)
            return None
        self.book.clear(raw.key)
        return stored

    async def decode_all(self, kvs: Sequence[Any]) -> dict[bytes, StoredResource]:
        """The valid resources among ``kvs`` by etcd key, in order. Decoding and validating
        is ~60 µs a Dataplane: a pause lets the event loop serve others every few hundred."""
        decoded: dict[bytes, StoredResource] = {}
        for index, raw in enumerate(kvs):
            if index % _DECODE_BATCH == _DECODE_BATCH - 1:
                await anyio.lowlevel.checkpoint()
            stored = self.decode(raw)
            if stored is not None:
                decoded[raw.key] = stored
        return decoded
