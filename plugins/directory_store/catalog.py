"""The directory store's state in memory: resources, which file holds each, and the problems.

:meth:`Catalog.apply` is the one way state changes, for a file read by the watcher as for a file
the store itself just wrote: a file is taken whole or not at all. Every document must decode and
validate (that is :func:`files.parse`'s business) and no resource may be owned by another file;
then the file's resources are diffed against what it held before and only real changes become
events. Otherwise the file is *in error*: the problem is logged and recorded, and the resources
it held keep their last valid version, so a typo never takes a running service away.

When two files define the same resource, the file that held it first keeps it (on start-up, the
first in path order) and the other is in error naming both. The loser is remembered as *blocked*
on those keys; once they are released (the owner is deleted or edited), the store re-reads the
blocked file, so it takes over without anyone touching it again.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
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
    #: Keys the file defines but another file owns; non-empty only while it is in error for it.
    blocked: frozenset[ResourceKey] = field(default_factory=frozenset)


class Catalog:
    def __init__(self) -> None:
        self.index = ResourceIndex()
        self.hub = WatchHub()
        self.revision = 0
        self.files: dict[str, FileState] = {}
        self.owners: dict[ResourceKey, str] = {}
        self.problems: dict[str, Problem] = {}

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
        return sorted(
            p for p, s in self.files.items() if s.blocked and not s.blocked.isdisjoint(keys)
        )

    # --- changing ------------------------------------------------------------------------------

    def apply(self, path: str, parsed: Parsed | None) -> set[ResourceKey]:
        """Take the new content of ``path`` (None: the file is gone). Returns the keys the file
        gave up, which files blocked on them may now take."""
        state = self.files.get(path)
        if parsed is None:
            if state is None:
                return set()
            del self.files[path]
            if self.problems.pop(path, None) is not None:
                log.info("%s: removed; its problem is gone with it", path)
            return self._release(path, state.keys)
        if parsed.error is not None:
            self._fail(path, parsed.digest, parsed.error, state)
            return set()
        keys = tuple(ResourceKey.of(r) for r in parsed.resources)
        taken = {k: o for k in keys if (o := self.owners.get(k, path)) != path}
        if taken:
            reason = "; ".join(
                f"{key} is also defined in {owner}, which keeps it" for key, owner in taken.items()
            )
            self._fail(path, parsed.digest, reason, state, blocked=frozenset(taken))
            return set()
        previous = state.keys if state is not None else ()
        self.files[path] = FileState(parsed.digest, keys)
        if self.problems.pop(path, None) is not None:
            log.info("%s: fixed, its resources are served again", path)
        fresh = set(keys)
        released = self._release(path, [k for k in previous if k not in fresh])
        now = datetime.now(UTC)
        for resource, key in zip(parsed.resources, keys, strict=True):
            self.owners[key] = path
            self._put(key, resource, now)
        return released

    def _fail(
        self,
        path: str,
        digest: bytes,
        reason: str,
        state: FileState | None,
        blocked: frozenset[ResourceKey] = frozenset(),
    ) -> None:
        kept = state.keys if state is not None else ()
        self.files[path] = FileState(digest, kept, blocked)
        self.problems[path] = Problem(where=path, reason=reason)
        log.warning(
            "%s: %s; %s",
            path,
            reason,
            f"keeping its last valid version ({len(kept)} resources)" if kept else "ignored",
        )

    def _put(self, key: ResourceKey, resource: Resource, now: datetime) -> None:
        current = self.index.get(key)
        if current is not None and current.resource == resource:
            return  # unchanged: no event, same version
        self.revision += 1
        if current is None:
            operation, created = Operation.CREATE, now
        else:
            operation, created = Operation.UPDATE, current.meta.creation_time
        meta = ResourceMeta(str(self.revision), created, now)
        self.index.put(StoredResource(resource, meta))
        self.hub.publish(ResourceEvent(operation, resource, meta, self.revision))

    def _release(self, path: str, keys: Iterable[ResourceKey]) -> set[ResourceKey]:
        released: set[ResourceKey] = set()
        for key in keys:
            if self.owners.get(key) != path:
                continue
            del self.owners[key]
            stored = self.index.pop(key)
            if stored is None:
                continue
            self.revision += 1
            self.hub.publish(
                ResourceEvent(Operation.DELETE, stored.resource, stored.meta, self.revision)
            )
            released.add(key)
        return released

    def sorted_problems(self) -> Sequence[Problem]:
        return tuple(self.problems[p] for p in sorted(self.problems))
