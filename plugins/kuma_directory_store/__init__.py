"""The ``directory`` store: resources are the YAML and JSON files of a folder, live.

Any ``*.yaml``, ``*.yml`` or ``*.json`` file under the folder (sub-folders included; dot-files
and dot-folders ignored) holds one or several resources (``---``-separated documents, or a JSON
array). Dropping a file creates its resources, editing it updates them, deleting it removes them.

How it fits together:

- :mod:`.files` reads a file whole and parses it (decode and validate every document), names and
  writes files atomically (temp dot-file + ``os.replace``), and cuts one document out of a
  multi-document file without touching the others.
- :mod:`.catalog` holds the state in memory and applies a file all or nothing: a file that fails
  to parse or validate, or defines a resource another file already defines, is *in error*; it
  is logged with its path, line or field and reason, listed by ``problems()``, and the resources
  it held keep their last valid version.
- :mod:`.watcher` runs ``watchfiles.awatch`` (debounced, so an editor's partial write or
  write-then-rename arrives as one change) and hands the store the paths to re-read; it rescans
  folders moved in or out, and restarts with a full rescan if watching fails.
- :mod:`.store` implements the Store protocol over the catalog; one lock orders the watcher's
  reads and the store's own writes, which land as files.
- :mod:`.bulk` parses thousands of files at start-up in child processes, on every core.

Start-up scans the whole folder before the store is handed out, once the watch is proven live,
so the first ``watch()`` snapshot is the folder's full state and nothing written meanwhile is
missed. Resources' versions are the store's revision, as in the memory store: they are not kept
across restarts. A resource's creation time is its file's modification time when it is first
read, so a restart keeps it (an edit made while kuma-cp was stopped moves it).

Options (``store.directory`` in kuma-cp's configuration): ``path`` (required; created if
missing) and ``debounceMs`` (default 50): changes are read once the folder has been quiet for
10 ms (half of ``debounceMs`` if that is shorter), at the latest ``debounceMs`` after the first
change of a burst; ``maxFileBytes`` (default 8 MiB): a
bigger file is reported as a problem and not read (files of 1 MiB or more are logged when read).
Files are read and parsed outside the lock that orders the store's writes. For file systems
that do not notify (some network and VM shares), set ``WATCHFILES_FORCE_POLLING=1`` in the
environment; a folder that stays silent is reported in ``problems()``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kuma.store import StoreConfigError

from .files import DEFAULT_MAX_FILE_BYTES

if TYPE_CHECKING:
    from .store import DirectoryStore

__all__ = ["open_directory_store"]

_PREFIX = "store.directory"
DEFAULT_DEBOUNCE_MS = 50


def _options(options: Mapping[str, Any]) -> tuple[Path, int, int]:
    unknown = sorted(set(options) - {"path", "debounceMs", "maxFileBytes"})
    if unknown:
        names = ", ".join(f"{_PREFIX}.{name}" for name in unknown)
        raise StoreConfigError(f"{names}: unknown option(s); known: path, debounceMs, maxFileBytes")
    raw_path = options.get("path")
    if not isinstance(raw_path, str | os.PathLike) or not str(raw_path):
        raise StoreConfigError(f"{_PREFIX}.path: required, the folder that holds the resources")
    debounce = options.get("debounceMs", DEFAULT_DEBOUNCE_MS)
    if isinstance(debounce, bool) or not isinstance(debounce, int) or not 1 <= debounce <= 60_000:
        raise StoreConfigError(f"{_PREFIX}.debounceMs: must be a whole number of ms in [1, 60000]")
    max_bytes = options.get("maxFileBytes", DEFAULT_MAX_FILE_BYTES)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
        raise StoreConfigError(f"{_PREFIX}.maxFileBytes: must be a whole number of bytes >= 1024")
    path = Path(raw_path).expanduser()
    if path.exists() and not path.is_dir():
        raise StoreConfigError(f"{_PREFIX}.path: {path} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreConfigError(f"{_PREFIX}.path: cannot create {path}: {exc.strerror}") from exc
    return path.resolve(), debounce, max_bytes


@asynccontextmanager
async def open_directory_store(options: Mapping[str, Any]) -> AsyncIterator[DirectoryStore]:
    """Entry point ``directory`` of the ``kuma.stores`` group."""
    # Imported here so that the parsing child processes (see .bulk), which import this package,
    # do not pay for the watcher and the store.
    import anyio

    from .store import DirectoryStore
    from .watcher import FolderWatcher

    root, debounce_ms, max_file_bytes = _options(options)
    store = DirectoryStore(str(root), max_file_bytes=max_file_bytes)
    watcher = FolderWatcher(
        store.root, debounce_ms, store.reconcile, store.set_trouble, store.known_dirs
    )
    failure: Exception | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watcher.run)
            # Scan only once the watch is proven live: a file written during the scan is then
            # either read by the scan or reported by the watcher (or both; the same content is
            # never applied twice).
            await watcher.ready.wait()
            await store.reconcile(set(), {store.root})
            try:
                yield store
            except Exception as exc:
                # Raised by the caller's block: re-raised as is below, not wrapped in the task
                # group's ExceptionGroup.
                failure = exc
            finally:
                watcher.stop()
                tg.cancel_scope.cancel()
    finally:
        store.close()
    if failure is not None:
        raise failure
