"""Reading and parsing many files at once, on every core: the start-up of a big folder.

Past libyaml's C scanner, building the documents is Python work (0.2-0.3 ms for a Dataplane
with a few outbounds), so one process parses some 4,000 files a second however many threads it
uses. For a batch of thousands of files, the work is split among child processes that read and
parse their share and send back the parsed files, pickled.

The children are plain ``python -m`` subprocesses rather than :mod:`multiprocessing`: nothing
depends on how the main program was started (``spawn`` re-imports ``__main__``, which fails under
``python -c`` or an embedding host) and no process running threads is forked. If a child fails
in any way, its share is parsed in this process instead: slower, never wrong.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

import kuma

from .files import DEFAULT_MAX_FILE_BYTES, Parsed, read_and_parse

log = logging.getLogger("kuma.store.directory")

#: Below this many files, starting interpreters (~0.2 s) costs more than it saves.
PARALLEL_MIN_FILES = 2000
MAX_WORKERS = 8
_CHILD_TIMEOUT = 600.0

Results = dict[str, Parsed | None]


def read_and_parse_new(paths: Sequence[str], limit: int = DEFAULT_MAX_FILE_BYTES) -> Results:
    """Read and parse files the store does not know yet (None for a file that is gone)."""
    workers = min(os.cpu_count() or 1, MAX_WORKERS, len(paths) // (PARALLEL_MIN_FILES // 2))
    if len(paths) < PARALLEL_MIN_FILES or workers < 2:
        return parse_here(paths, limit)
    shares = [paths[i::workers] for i in range(workers)]
    merged: Results = {}
    with ThreadPoolExecutor(workers, thread_name_prefix="directory-store-bulk") as pool:
        for part in pool.map(lambda share: _in_child(share, limit), shares):
            merged.update(part)
    return merged


def parse_here(paths: Sequence[str], limit: int = DEFAULT_MAX_FILE_BYTES) -> Results:
    return {path: read_and_parse(path, None, limit) for path in paths}


def _child_environment() -> dict[str, str]:
    # The child must import this very code, installed or not: put our source roots first.
    roots = {
        str(Path(__file__).resolve().parents[2]),
        str(Path(kuma.__file__).resolve().parents[1]),
    }
    existing = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*roots, *([existing] if existing else [])]),
    }


def _in_child(paths: Sequence[str], limit: int) -> Results:
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "kuma_directory_store.parse_child"],
            input=orjson.dumps({"paths": list(paths), "limit": limit}),
            capture_output=True,
            timeout=_CHILD_TIMEOUT,
            env=_child_environment(),
            check=False,
        )
        if completed.returncode == 0:
            results = pickle.loads(completed.stdout)
            if isinstance(results, dict) and len(results) == len(paths):
                return results
        reason = completed.stderr.decode(errors="replace").strip().splitlines()[-1:]
        log.warning("parsing in a child process failed (%s); parsing here", reason)
    except (OSError, subprocess.SubprocessError, pickle.UnpicklingError, EOFError) as exc:
        log.warning("parsing in a child process failed (%r); parsing here", exc)
    return parse_here(paths, limit)
