"""Watching the folder with watchfiles and turning notices into "re-read these paths".

The watcher never reads a file itself: it hands the store the resource files that changed and
the directories that appeared or vanished. Directories matter because the file system reports a
folder moved in or out as one event for the folder alone, and files created right after their
folder may be missed before the folder's own watch exists; the store rescans those folders.

Start-up is a handshake: ``watchfiles.awatch`` starts watching when its iteration begins, which
nothing signals, so the watcher writes a hidden probe file until its own filter sees it. Only then
does the store scan the folder: nothing written after the scan started can be missed.

If watching fails (the folder was removed, the watch limit was hit), the watcher reports it as a
problem of the store, waits for the folder with a growing delay, and starts again with a full
rescan, so the state converges on what the folder holds.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from contextlib import aclosing

import anyio
import watchfiles
from anyio.abc import TaskStatus

from .files import is_hidden, is_resource_file

log = logging.getLogger("kuma.store.directory")

#: Called with the resource files and the directories to re-read.
OnChanges = Callable[[set[str], set[str]], Awaitable[None]]
#: Called with why watching stopped, or None once it works again.
OnTrouble = Callable[[str | None], None]

_PROBE_WAIT = 2.0
_PROBE_ATTEMPTS = 3
_MAX_BACKOFF = 30.0
#: The longest quiet period (ms) before a batch of changes is read.
_QUIET_STEP_MS = 10


class FolderWatcher:
    def __init__(
        self,
        root: str,
        debounce_ms: int,
        on_changes: OnChanges,
        on_trouble: OnTrouble,
        known_dirs: set[str],
    ) -> None:
        self._root = root
        # watchfiles checks for news every ``step`` ms and delivers a batch at the first check
        # that found nothing new: a change waits between one and two steps after the folder went
        # quiet. That wait is all of a lone edit's delay before the engine sees it (25-50 ms with
        # half of the default 50 ms as the step: a third of a policy change's 100 ms budget), so
        # the step is capped: a save (write, or write-then-rename) takes well under a step, and
        # a burst still groups for up to ``debounce_ms``.
        self._step_ms = max(1, min(debounce_ms // 2, _QUIET_STEP_MS))
        # watchfiles also groups changes for up to ``debounce`` ms (1600 by default) while they
        # keep coming: under a steady stream of edits every batch would wait that long.
        self._debounce_ms = max(self._step_ms, debounce_ms)
        self._on_changes = on_changes
        self._on_trouble = on_trouble
        self._known_dirs = known_dirs  # owned by the store, read here
        self._probe = os.path.join(root, f".kuma-directory-store-{uuid.uuid4().hex}.probe")
        self._probe_seen = anyio.Event()
        self._stop = anyio.Event()
        self.ready = anyio.Event()

    def stop(self) -> None:
        # Lets watchfiles' worker thread return within one step instead of its 5 s timeout.
        self._stop.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        backoff = 0.1
        rescan = False
        reported: str | None = None
        while not self._stop.is_set():
            trouble = await self._watch(rescan=rescan)
            if trouble is None:
                return  # stopped
            if self._probe_seen.is_set():  # it had been working: a new failure, not a repeat
                backoff, reported = 0.1, None
                self._probe_seen = anyio.Event()
            if trouble != reported:  # once per cause, not once per retry
                log.error("%s; retrying with growing delays (up to %d s)", trouble, _MAX_BACKOFF)
                reported = trouble
            self._on_trouble(trouble)
            self.ready.set()  # start-up goes on: the store serves what it read, the problem shows
            # Changes may have been missed; a folder that is gone holds no resources.
            await self._rescan()
            rescan = True
            with anyio.move_on_after(backoff):
                await self._stop.wait()
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _watch(self, *, rescan: bool) -> str | None:
        """Watch until stopped (None) or until watching fails (the reason)."""
        if not await anyio.Path(self._root).is_dir():
            return f"watching {self._root} stopped: it is not a directory"
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._handshake, rescan)
            try:
                changes_of = watchfiles.awatch(
                    self._root,
                    watch_filter=self._accept,
                    step=self._step_ms,
                    debounce=self._debounce_ms,
                    stop_event=self._stop,
                    recursive=True,
                    ignore_permission_denied=True,
                )
                async with aclosing(changes_of):
                    async for changes in changes_of:
                        paths = {path for _, path in changes}
                        files = {p for p in paths if is_resource_file(os.path.basename(p))}
                        await self._on_changes(files, paths - files)
                        if self._root in paths and not await anyio.Path(self._root).is_dir():
                            return f"watching {self._root} stopped: it was removed"
            except Exception as exc:  # a watch failure must never end the store
                return f"watching {self._root} stopped: {exc!r}"
            finally:
                tg.cancel_scope.cancel()
        return None

    async def _handshake(self, rescan: bool) -> None:
        silent = False
        for attempt in itertools.count(1):
            try:
                await anyio.to_thread.run_sync(_touch, self._probe)
            except OSError as exc:
                # A read-only folder is a fine source of resources; without a probe the start-up
                # is merely not proven race-free (the store's writes will fail anyway).
                log.warning(
                    "cannot write a probe into %s (%s); not waiting for it", self._root, exc
                )
                break
            with anyio.move_on_after(_PROBE_WAIT):
                await self._probe_seen.wait()
            if self._probe_seen.is_set():
                break
            if attempt == _PROBE_ATTEMPTS:
                # Some network and VM shares never notify. Serve what the scan finds, say why
                # changes are not seen, and keep probing in case notices start to flow.
                silent = True
                reason = (
                    f"no change notices arrive from {self._root}; edits will not be seen "
                    "(set WATCHFILES_FORCE_POLLING=1 for folders that cannot notify)"
                )
                log.error("%s", reason)
                self._on_trouble(reason)
                self.ready.set()
        await anyio.to_thread.run_sync(_discard, self._probe)
        if rescan or silent:
            await self._rescan()
            self._on_trouble(None)
            log.info("watching %s", self._root)
        self.ready.set()

    async def _rescan(self) -> None:
        try:
            await self._on_changes(set(), {self._root})
        except Exception:  # a bug in reading must not end the watch; the next rescan may do
            log.exception("rescanning %s failed", self._root)

    def _accept(self, change: watchfiles.Change, path: str) -> bool:
        """watchfiles' filter, run on the event loop for every raw notice."""
        if path == self._probe:
            self._probe_seen.set()
            return False
        relative = path[len(self._root) + 1 :] if path.startswith(self._root + "/") else ""
        if any(is_hidden(part) for part in relative.split("/") if part):
            return False  # dot-files (editor swap files, our temp files) and dot-directories
        name = os.path.basename(path)
        if is_resource_file(name):
            return True
        # A directory that appeared or vanished: the store rescans it.
        return path in self._known_dirs or os.path.isdir(path)


def _discard(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _touch(path: str) -> None:
    with open(path, "wb"):
        pass
