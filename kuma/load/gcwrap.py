"""Run a module (``python -m kuma.load.gcwrap MODULE ARGS...``) and log its slow collections.

Diagnostic for pauses of the control plane under test: every garbage collection longer than
``KUMA_LOAD_GC_LOG_MS`` (default 20) prints ``gc pause gen=<n> ms=<duration> collected=<n>``
on stderr, which the harness collects with the rest of the output.

Experiments: ``KUMA_LOAD_GC_THRESHOLD=a,b,c`` sets ``gc.set_threshold(a, b, c)``;
``KUMA_LOAD_GC_FREEZE=1`` freezes what survived each full collection (``gc.freeze()``), so
the next full collection scans only what was allocated since.
"""

from __future__ import annotations

import gc
import os
import runpy
import sys
import time
from typing import Any

_started = [0.0]


def _callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    elapsed = (time.perf_counter() - _started[0]) * 1000
    if info.get("generation") == 2 and os.environ.get("KUMA_LOAD_GC_FREEZE") == "1":
        gc.freeze()
    if elapsed >= float(os.environ.get("KUMA_LOAD_GC_LOG_MS", "20")):
        print(
            f"gc pause gen={info.get('generation')} ms={elapsed:.1f} "
            f"collected={info.get('collected')}",
            file=sys.stderr,
            flush=True,
        )


def main() -> None:
    module, *rest = sys.argv[1:]
    sys.argv = [module, *rest]
    threshold = os.environ.get("KUMA_LOAD_GC_THRESHOLD")
    if threshold:
        gc.set_threshold(*(int(part) for part in threshold.split(",")))
    gc.callbacks.append(_callback)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
