"""The directory store's state in memory: resources, which file holds each, and the problems.

:meth:`Catalog.apply` is the one way state changes, for files read by the watcher as for a file
the store itself just wrote: a file is taken whole or not at all. Every document must decode and
validate (that is :func:`files.parse`'s business) and no resource may be owned by another file;
then the file's resources are diffed against what it held before and only real changes become
events. Otherwise the file is *in error*: the problem is logged and recorded, and the resources
it held keep their last valid version, so a typo never takes a running service away.

When two files define the same resource, the file that held it first keeps it (on start-up, the
first in path order) and the other is in error naming both. The loser is remembered as *blocked*
on those keys; when the owner changes or goes, the store re-reads the blocked file in the same
batch, so it takes over without anyone touching it again (and without a DELETE in between).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kuma.resources import Resource, ResourceKey, ResourceMeta, StoredResource
from kuma.store import Operation, Problem, ResourceEvent
from kuma.store.hub import WatchHub
from kuma.store.index import ResourceIndex

from .files import Parsed

log = logging.getLogger("kuma.store.directory")


@dataclass
class FileState:
    #: Digest of the content last read (valid or not): the same content is never applied twice,
    #: which is also how the watcher's notice of the store's own writes is recognised.
    digest: bytes
    #: The resources the file holds now (its last valid version), in document order.
    keys: tuple[ResourceKey, ...] = ()


class Catalog:
    def __init__(self) -> None:
        self.index = ResourceIndex()
        self.hub = WatchHub()
        self.revision = 0
        self.files: dict[str, FileState] = {}
        self.owners: dict[ResourceKey, str] = {}
        self.problems: dict[str, Problem] = {}
        #: Files in error because another file owns some of the keys they define: those keys.
        self.blocked: dict[str, frozenset[ResourceKey]] = {}
        #: Called after a change of ``problems`` (the GUI shows a broken file as it breaks).
        self.problem_listeners: list[Callable[[], None]] = []

    # --- reading -------------------------------------------------------------------------------

    def snapshot(self) -> tuple[list[StoredResource], int]:
        return list(self.index), self.revision

    def resources_of(self, path: str) -> list[Resource]:
        """The resources ``path`` holds now, in document order."""
        found = (self.index.get(key) for key in self.files[path].keys)
        return [stored.resource for stored in found if stored is not None]

    def known_under(self, directory: str) -> list[str]:
        prefix = directory.rstrip("/") + "/"
        return [path for path in self.files if path.startswith(prefix)]

    def blocked_on(self, keys: Collection[ResourceKey]) -> list[str]:
        """Files in error because another file owned one of ``keys``."""
        return sorted(p for p, wanted in self.blocked.items() if not wanted.isdisjoint(keys))

    # --- changing ------------------------------------------------------------------------------

    def apply(self, batch: Mapping[str, Parsed | None]) -> set[ResourceKey]:
        """Take the new content of every file of ``batch`` (None: the file is gone). Returns
        the keys given up, which files blocked on them may now take.

        A batch is applied as a whole, so a resource that moves between files in one batch (a
        file renamed or moved to a sub-folder, a document moved to another file) changes owner
        without an event when its content is the same, instead of a DELETE and a CREATE."""
        before = dict(self.problems)
        try:
            return self._apply(batch)
        finally:
            if self.problems != before:
                self.problems_changed()

    def problems_changed(self) -> None:
        for listener in tuple(self.problem_listeners):
            listener()

    def _apply(self, batch: Mapping[str, Parsed | None]) -> set[ResourceKey]:
        valid: list[tuple[str, Parsed, tuple[ResourceKey, ...], tuple[ResourceKey, ...]]] = []
        orphans: dict[ResourceKey, str] = {}  # disowned for now: kept if someone takes them
        for path in sorted(batch):
            parsed, state = batch[path], self.files.get(path)
            previous = state.keys if state is not None else ()
            if parsed is None:
                if state is not None:
                    del self.files[path]
                    self.blocked.pop(path, None)
                    if self.problems.pop(path, None) is not None:
                        log.info("%s: removed; its problem is gone with it", path)
                    orphans.update(self._disown(path, previous))
            elif parsed.error is not None:
                self._fail(path, parsed.digest, parsed.error, previous)
            else:
                keys = tuple(ResourceKey.of(r) for r in parsed.resources)
                fresh = set(keys)
                orphans.update(self._disown(path, [k for k in previous if k not in fresh]))
                valid.append((path, parsed, keys, previous))
        now = datetime.now(UTC)
        for path, parsed, keys, previous in valid:
            taken = {k: o for k in keys if (o := self.owners.get(k, path)) != path}
            if taken:
                reason = "; ".join(
                    f"{k} is also defined in {o}, which keeps it" for k, o in taken.items()
                )
                # Its last valid version stays: take back what it let go of and nobody took.
                for key in previous:
                    if orphans.get(key) == path:
                        del orphans[key]
                        self.owners[key] = path
                kept = tuple(k for k in previous if self.owners.get(k) == path)
                self._fail(path, parsed.digest, reason, kept, blocked=frozenset(taken))
                continue
            self.files[path] = FileState(parsed.digest, keys)
            if parsed.exposed_mode is not None:
                log.warning(
                    "%s holds secrets but its mode %04o lets others read it; run: chmod 600 %s",
                    path,
                    parsed.exposed_mode,
                    path,
                )
            self.blocked.pop(path, None)
            if self.problems.pop(path, None) is not None:
                log.info("%s: fixed, its resources are served again", path)
            for resource, key in zip(parsed.resources, keys, strict=True):
                self.owners[key] = path
                orphans.pop(key, None)
                self._put(key, resource, now, parsed.mtime)
        for key in orphans:
            self._remove(key)
        return set(orphans)

    def _disown(self, path: str, keys: Iterable[ResourceKey]) -> dict[ResourceKey, str]:
        disowned = {key: path for key in keys if self.owners.get(key) == path}
        for key in disowned:
            del self.owners[key]
        return disowned

    def _fail(
        self,
        path: str,
        digest: bytes,
        reason: str,
        kept: tuple[ResourceKey, ...],
        blocked: frozenset[ResourceKey] = frozenset(),
    ) -> None:
        self.files[path] = FileState(digest, kept)
        if blocked:
            self.blocked[path] = blocked
        else:
            self.blocked.pop(path, None)
        self.problems[path] = Problem(where=path, reason=reason)
        log.warning(
            "%s: %s; %s",
            path,
            reason,
            f"keeping its last valid version ({len(kept)} resources)"
            if kept
            else "none of its resources are served",
        )

    def _put(
        self, key: ResourceKey, resource: Resource, now: datetime, mtime: float | None = None
    ) -> None:
        current = self.index.get(key)
        if current is not None and current.resource == resource:
            return  # unchanged: no event, same version
        self.revision += 1
        if current is None:
            # New to this process: created when its file was last written (a restart keeps
            # the time), or now when that is not known.
            operation, modified = Operation.CREATE, now
            if mtime is not None:
                modified = min(now, datetime.fromtimestamp(mtime, UTC))
            created = modified
        else:
            operation, created, modified = Operation.UPDATE, current.meta.creation_time, now
        meta = ResourceMeta(str(self.revision), created, modified)
        self.index.put(StoredResource(resource, meta))
        self.hub.publish(ResourceEvent(operation, resource, meta, self.revision))

    def _remove(self, key: ResourceKey) -> None:
        stored = self.index.pop(key)
        if stored is not None:
            self.revision += 1
            self.hub.publish(
                ResourceEvent(Operation.DELETE, stored.resource, stored.meta, self.revision)
            )

    def sorted_problems(self) -> Sequence[Problem]:
        return tuple(self.problems[p] for p in sorted(self.problems))
