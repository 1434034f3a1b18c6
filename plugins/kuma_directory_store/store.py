"""The directory store: the Store protocol over a folder of YAML/JSON files.

Reads are served from memory (:class:`~.catalog.Catalog`). Every change of state, from the
watcher or from a write through the store, runs under one lock and goes through
``Catalog.apply``; file reads and writes happen in worker threads while the lock is held. The
lock is what keeps memory and disk in step: the watcher can never read a file between two of the
store's own writes and mistake the older content for news, and a write always starts from the
file as it is on disk.

Writes land as files. A new resource gets a new file named after it; an update or delete
rewrites the file that holds the resource, keeping its other documents as written. The store
applies the file it wrote at once, with its digest, so ``get`` after ``create`` sees the
resource and the watcher's later notice of that file finds nothing new and emits nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import (
    AsyncIterator,
    Callable,
    Container,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, TypeVar

import anyio

from kuma.resources import Resource, ResourceKey, StoredResource, encode_yaml
from kuma.resources.validation import check
from kuma.store import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    Problem,
    ResourcePage,
    StoreError,
    StoreUnavailableError,
    WatchItem,
)

from .bulk import read_and_parse_new
from .catalog import Catalog, FileState
from .files import (
    DEFAULT_MAX_FILE_BYTES,
    SECRET_FILE_MODE,
    Parsed,
    digest_of,
    encode_new,
    fresh_path,
    holds_secrets,
    parse,
    read_and_parse,
    read_whole,
    replaced,
    walk,
    write_atomically,
)
from .files import remove as remove_file
from .files import rewrite as rewrite_text

_T = TypeVar("_T")

log = logging.getLogger("kuma.store.directory")


class _Stale(Exception):
    """The file changed on disk since the store last read it."""


class DirectoryStore:
    name = "directory"

    def __init__(self, root: str, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
        self.root = root
        self.max_file_bytes = max_file_bytes
        self._catalog = Catalog()
        self._lock = anyio.Lock()
        #: Directories seen in scans: a notice about one of them after it vanished is a folder
        #: moved away, whose files must go.
        self.known_dirs: set[str] = set()
        self._trouble: Problem | None = None

    # --- reads ---------------------------------------------------------------------------------

    async def get(self, key: ResourceKey) -> StoredResource:
        stored = self._catalog.index.get(key)
        if stored is None:
            raise NotFoundError(key)
        return stored

    async def list(
        self,
        type: str,
        mesh: str | None = None,
        *,
        limit: int | None = None,
        offset: str | None = None,
    ) -> ResourcePage:
        return self._catalog.index.page(type, mesh, limit, offset)

    def watch(self) -> AbstractAsyncContextManager[AsyncIterator[WatchItem]]:
        return self._catalog.hub.watch(self._catalog.snapshot)

    def problems(self) -> Sequence[Problem]:
        found = self._catalog.sorted_problems()
        return (self._trouble, *found) if self._trouble is not None else found

    def on_problems_changed(self, callback: Callable[[], None]) -> Callable[[], None]:
        listeners = self._catalog.problem_listeners
        listeners.append(callback)
        return lambda: listeners.remove(callback) if callback in listeners else None

    # --- writes --------------------------------------------------------------------------------

    async def create(self, resource: Resource) -> StoredResource:
        check(resource)
        key = ResourceKey.of(resource)
        async with self._lock:
            if self._catalog.index.get(key) is not None:
                raise AlreadyExistsError(key)
            # ``files`` is read by the worker thread: it cannot change while the lock is held.
            taken = self._catalog.files
            with anyio.CancelScope(shield=True):  # a file written is a file applied
                path, parsed = await anyio.to_thread.run_sync(self._write_new, key, resource, taken)
                await self._apply({path: parsed})
            return await self.get(key)

    async def update(self, resource: Resource, *, version: str) -> StoredResource:
        check(resource)
        key = ResourceKey.of(resource)
        async with self._lock:
            await self._rewrite(key, version, resource)
            return await self.get(key)

    async def delete(self, key: ResourceKey, *, version: str | None = None) -> None:
        async with self._lock:
            await self._rewrite(key, version, None)

    async def _rewrite(self, key: ResourceKey, version: str | None, new: Resource | None) -> None:
        """Replace (or remove, ``new`` None) the resource in its file; the lock is held."""
        while True:
            current = self._catalog.index.get(key)
            if current is None:
                raise NotFoundError(key)
            if version is not None and current.meta.version != version:
                raise ConflictError(
                    key, f"version {version} is stale (current {current.meta.version})"
                )
            path = self._catalog.owners[key]
            problem = self._catalog.problems.get(path)
            if problem is not None:
                raise ConflictError(key, f"its file {path} must be fixed first: {problem.reason}")
            state = self._catalog.files[path]
            resources = self._catalog.resources_of(path)
            position = state.keys.index(key)
            with anyio.CancelScope(shield=True):
                try:
                    parsed = await anyio.to_thread.run_sync(
                        _rewrite_file, path, state.digest, resources, position, new
                    )
                except _Stale:
                    # Someone edited the file and the watcher has not caught up: take the
                    # edit first, then decide again (the version check may now fail).
                    await self._reconcile({path}, set())
                    continue
                await self._apply({path: parsed})
            return

    def _write_new(
        self, key: ResourceKey, resource: Resource, taken: Container[str]
    ) -> tuple[str, Parsed]:
        path = fresh_path(self.root, key, taken)
        data = encode_new(resource)
        parsed = _expect(parse(data, path), [resource])
        mode = SECRET_FILE_MODE if holds_secrets([resource]) else 0o666
        with _io_errors(path):
            write_atomically(path, data, new_mode=mode)
        return path, parsed

    # --- applying what the folder holds ---------------------------------------------------------

    async def reconcile(self, files: set[str], dirs: set[str]) -> None:
        """Re-read ``files`` and everything under ``dirs`` (the watcher's and start-up's entry).

        Files are read and parsed *before* the lock is taken, so a big or broken file never
        holds up the store's writes (REST, registration) while it is parsed. Under the lock
        the results are applied, except those of files the store itself rewrote meanwhile:
        those are read again there (they are files the store wrote, so quick to read)."""
        known = dict(self._catalog.files)
        listed = {d: self._catalog.known_under(d) for d in dirs}
        results, seen_dirs = await _in_thread(
            _read_all, self.root, files, listed, known, self.max_file_bytes
        )
        async with self._lock:
            current = self._catalog.files
            moved = [p for p in results if current.get(p) is not known.get(p)]
            if moved:
                results.update(await _in_thread(self._read_files, moved))
            self._note_dirs(dirs, seen_dirs)
            await self._apply(results)

    async def _reconcile(self, files: set[str], dirs: set[str]) -> None:
        """:meth:`reconcile` with the lock already held (a write found its file edited)."""
        known = self._catalog.files
        listed = {d: self._catalog.known_under(d) for d in dirs}
        results, seen_dirs = await _in_thread(
            _read_all, self.root, files, listed, known, self.max_file_bytes
        )
        self._note_dirs(dirs, seen_dirs)
        await self._apply(results)

    def _note_dirs(self, dirs: set[str], seen_dirs: Sequence[str]) -> None:
        for gone in dirs:
            prefix = gone.rstrip("/") + "/"
            self.known_dirs.difference_update(
                [d for d in self.known_dirs if d == gone or d.startswith(prefix)]
            )
        self.known_dirs.update(seen_dirs)

    def _read_files(self, paths: Iterable[str]) -> dict[str, Parsed | None]:
        """Read and parse ``paths`` as new content (blocking: run in a thread)."""
        inside, outside = _split_links(self.root, paths)
        return {
            **outside,
            **{path: read_and_parse(path, None, self.max_file_bytes) for path in inside},
        }

    async def _apply(self, results: Mapping[str, Parsed | None], *, force: bool = False) -> None:
        """Apply read files (in path order: the first file in order wins a duplicate), then let
        files blocked on released keys try again, until nothing more is released."""
        while results:
            if not force:
                results = {
                    path: parsed
                    for path, parsed in results.items()
                    if not _unchanged(self._catalog.files.get(path), parsed)
                }
            # Files blocked on what this batch may let go of join it: a duplicate then takes
            # over in the same step, with no DELETE in between.
            held = {key for path in results for key in self._held(path)}
            waiting = [p for p in self._catalog.blocked_on(held) if p not in results]
            if waiting:
                results = {**results, **await _in_thread(self._read_files, waiting)}
            released = self._catalog.apply(results)
            blocked = self._catalog.blocked_on(released)
            results = await _in_thread(self._read_files, blocked) if blocked else {}
            force = True  # a blocked file's content has not changed: read it as new anyway

    def _held(self, path: str) -> tuple[ResourceKey, ...]:
        state = self._catalog.files.get(path)
        return state.keys if state is not None else ()

    def set_trouble(self, reason: str | None) -> None:
        trouble = None if reason is None else Problem(where=self.root, reason=reason)
        if trouble != self._trouble:
            self._trouble = trouble
            self._catalog.problems_changed()

    def close(self) -> None:
        self._catalog.hub.close()


def _unchanged(state: FileState | None, parsed: Parsed | None) -> bool:
    if parsed is None:
        return state is None
    return state is not None and state.digest == parsed.digest


async def _in_thread(func: Callable[..., _T], *args: Any) -> _T:
    """Blocking reads and parses in a worker thread, abandoned on cancellation: they change
    nothing but their result, so a shutdown need not wait for a big file to be parsed."""
    return await anyio.to_thread.run_sync(func, *args, abandon_on_cancel=True)


#: Why a link to a file outside the folder is not read (a /etc/passwd dropped in as a link).
OUTSIDE_REASON = "a link to a file outside the store's folder: not read"


def _split_links(root: str, paths: Iterable[str]) -> tuple[list[str], dict[str, Parsed | None]]:
    """The paths whose file is inside ``root``, and an error for each that leads outside it
    (a symbolic link, or a link on the way): the store serves the folder, nothing else."""
    base = os.path.realpath(root)
    inside: list[str] = []
    outside: dict[str, Parsed | None] = {}
    for path in paths:
        real = os.path.realpath(path)
        if real == base or real.startswith(base + os.sep) or not os.path.lexists(path):
            inside.append(path)
        else:
            outside[path] = Parsed(b"", error=OUTSIDE_REASON)
    return inside, outside


def _read_all(
    root: str,
    files: Iterable[str],
    listed: Mapping[str, Iterable[str]],
    known: Mapping[str, FileState],
    limit: int,
) -> tuple[dict[str, Parsed | None], list[str]]:
    """Read ``files``, every file found under the listed dirs and every file known there.
    ``known`` is the catalog's table: stable while the store's lock is held, read-only here."""
    targets = set(files)
    seen_dirs: list[str] = []
    for directory, known_there in listed.items():
        found, subdirs = walk(directory)
        targets.update(found, known_there)
        seen_dirs.extend(subdirs)
    inside, outside = _split_links(root, targets)
    targets = set(inside)
    results = read_and_parse_new(sorted(p for p in targets if p not in known), limit)
    results.update(outside)
    for path in targets:
        state = known.get(path)
        if state is not None:
            results[path] = read_and_parse(path, state.digest, limit)
    return results, seen_dirs


def _rewrite_file(
    path: str, digest: bytes, resources: Sequence[Resource], position: int, new: Resource | None
) -> Parsed | None:
    """Write ``path`` with the resource at ``position`` replaced (or removed); None when the
    file held nothing else and was removed. Raises _Stale if the file is not what we hold."""
    with _io_errors(path):
        data = read_whole(path)
    if data is None or digest_of(data) != digest:
        raise _Stale(path)
    wanted = replaced(resources, position, new)
    if not wanted:
        with _io_errors(path):
            remove_file(path)
        return None
    text = rewrite_text(data.decode(), resources, position, new)
    parsed = parse(text.encode(), path)
    if parsed.error is not None or list(parsed.resources) != wanted:
        # The text could not be cut as expected: encode the whole file again, losing comments.
        text = encode_yaml(wanted)
        parsed = _expect(parse(text.encode(), path), wanted)
    with _io_errors(path):
        write_atomically(path, text.encode())
    return parsed


def _expect(parsed: Parsed, wanted: Sequence[Resource]) -> Parsed:
    if parsed.error is not None or list(parsed.resources) != list(wanted):
        raise StoreError(f"encoding {len(wanted)} resources does not read back: {parsed.error}")
    return parsed


@contextmanager
def _io_errors(path: str) -> Iterator[None]:
    """The file system refusing a write is the store being unavailable, not a bug. It is
    logged here with the file's path; the error raised names no server path (API callers
    see its message)."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        log.error(
            "the store's folder refused a write: %s", reason, extra={"fields": {"path": path}}
        )
        raise StoreUnavailableError(f"the store's folder refused a write: {reason}") from exc
