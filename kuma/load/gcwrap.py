"""Run a module (``python -m kuma.load.gcwrap MODULE ARGS...``) and log its slow collections.

Diagnostic for pauses of the control plane under test: every garbage collection longer than
``KUMA_LOAD_GC_LOG_MS`` (default 20) prints on stderr, which the harness collects with the
rest of the output::

    gc pause gen=<n> ms=<wall> cpu_ms=<thread CPU> collected=<n> uncollectable=<n>
        count=<a,b,c> young=<len gen 0>,<len gen 1> frozen=<n>

``cpu_ms`` is the collecting thread's CPU time across the collection (``time.thread_time``):
far below ``ms``, the process was descheduled, not collecting. ``count`` is ``gc.get_count()``
at the start; ``young`` the lengths of generations 0 and 1 at the start (only with
``KUMA_LOAD_GC_DETAIL=1``: listing them costs about a microsecond per object); young lengths
exceed the counts when objects are tracked without being counted (tuples from the free list,
dicts re-tracked). ``frozen``, the permanent generation's length (-1 unless
``KUMA_LOAD_GC_FROZEN=1``): CPython counts it by walking every frozen object, 60-600 ms with
a settled 10,000-proxy heap (3 million objects), a stall in the process under test at each
collection and freeze: never in a latency measurement.
``KUMA_LOAD_GC_FILE=PATH`` appends the same fields, one line per collection, to PATH, and
with ``KUMA_LOAD_GC_TYPES=N`` (and ``KUMA_LOAD_GC_DETAIL=1``), for each collection whose
generation 0 holds N objects more than its count, the ten commonest types there; with
``KUMA_LOAD_GC_DETAIL=1`` each ``gc.freeze()`` also appends a ``freeze frozen=<n>`` line.

Experiments: ``KUMA_LOAD_GC_THRESHOLD=a,b,c`` sets ``gc.set_threshold(a, b, c)`` at every
collection (so also after the module set its own); ``KUMA_LOAD_GC_FREEZE=1`` freezes what survived
each full collection (``gc.freeze()``), so the next full collection scans only what was
allocated since. ``KUMA_LOAD_GC_FREEZE=never`` turns kuma-cp's own freezing
(``kuma.cp.gc_freeze``, which freezes the heap at the first quiet second after activity and the
survivors of each young collection) off; ``KUMA_LOAD_GC_FREEZE=quiet`` keeps only the former.
"""

from __future__ import annotations

import collections
import gc
import os
import runpy
import sys
import time
from typing import Any, TextIO


class _Recorder:
    """The ``gc.callbacks`` entry: times each collection and reports it."""

    def __init__(self, environ: dict[str, str] | os._Environ[str]) -> None:
        self.log_ms = float(environ.get("KUMA_LOAD_GC_LOG_MS", "20"))
        self.detail = environ.get("KUMA_LOAD_GC_DETAIL") == "1"
        self.types_over = int(environ.get("KUMA_LOAD_GC_TYPES", "0"))
        self.freeze = environ.get("KUMA_LOAD_GC_FREEZE") == "1"
        threshold = environ.get("KUMA_LOAD_GC_THRESHOLD")
        self.threshold = tuple(int(part) for part in threshold.split(",")) if threshold else None
        path = environ.get("KUMA_LOAD_GC_FILE")
        self.file: TextIO | None = open(path, "a", buffering=1) if path else None  # noqa: SIM115
        self.wall = 0.0
        self.cpu = 0.0
        self.count = (0, 0, 0)
        self.young = (-1, -1)
        self.frozen = -1

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            if self.threshold is not None:
                # The module under test sets its own thresholds at start-up (after the first
                # collections, made by its imports): set ours again at every collection.
                gc.set_threshold(*self.threshold)
            self.count = gc.get_count()
            if self.detail:
                young = gc.get_objects(0)
                self.young = (len(young), len(gc.get_objects(1)))
                self.frozen = _frozen()
                if self.file is not None and 0 < self.types_over <= len(young) - self.count[0]:
                    common = collections.Counter(type(o).__qualname__ for o in young)
                    self.file.write(f"# types {common.most_common(10)}\n")
                del young
            self.cpu = time.thread_time()
            self.wall = time.perf_counter()
            return
        wall_ms = (time.perf_counter() - self.wall) * 1000
        cpu_ms = (time.thread_time() - self.cpu) * 1000
        generation = info.get("generation")
        if generation == 2 and self.freeze:
            gc.freeze()
        fields = (
            f"gen={generation} ms={wall_ms:.1f} cpu_ms={cpu_ms:.1f} "
            f"collected={info.get('collected')} uncollectable={info.get('uncollectable')} "
            f"count={','.join(map(str, self.count))} young={self.young[0]},{self.young[1]} "
            f"frozen={self.frozen}"
        )
        if self.file is not None:
            self.file.write(f"{time.time():.3f} {fields}\n")
        if wall_ms >= self.log_ms:
            print(f"gc pause {fields}", file=sys.stderr, flush=True)


def _frozen() -> int:
    """The frozen set's length if asked for (``KUMA_LOAD_GC_FROZEN=1``: a walk of it), else -1."""
    return gc.get_freeze_count() if os.environ.get("KUMA_LOAD_GC_FROZEN") == "1" else -1


def _log_freezes(file: TextIO) -> None:
    """Make every ``gc.freeze()`` (kuma-cp's freezer's too) append a line to ``file``."""
    freeze = gc.freeze

    def logged() -> None:
        freeze()
        file.write(f"{time.time():.3f} freeze frozen={_frozen()}\n")

    gc.freeze = logged


def _restrict_freezer(mode: str) -> None:
    """``quiet``: kuma-cp's freezer freezes at quiet moments only, not the survivors of each
    young collection; ``never``: it does nothing at all."""
    from kuma.cp.gc_freeze import SettledHeapFreezer

    initialize = SettledHeapFreezer.__init__

    def without_young_freezes(self: SettledHeapFreezer, *args: Any, **kwargs: Any) -> None:
        initialize(self, *args, **kwargs)
        self.young_freezes = 0

    SettledHeapFreezer.__init__ = without_young_freezes  # type: ignore[method-assign]
    if mode == "never":
        SettledHeapFreezer.tick = lambda self: False  # type: ignore[method-assign]


def main() -> None:
    module, *rest = sys.argv[1:]
    sys.argv = [module, *rest]
    recorder = _Recorder(os.environ)
    gc.callbacks.append(recorder)
    if os.environ.get("KUMA_LOAD_GC_FREEZE") in ("never", "quiet"):
        _restrict_freezer(os.environ["KUMA_LOAD_GC_FREEZE"])
    if recorder.detail and recorder.file is not None:
        _log_freezes(recorder.file)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
