"""``kuma-cp``: the control-plane command."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import anyio

import kuma
from kuma.open_files import AcceptFailures, raise_soft_limit
from kuma.store import StoreConfigError, StoreError
from kuma.xds.server.demux import connection_events, lost_connections

from . import logs
from .config import ConfigError, CpConfig, load_config
from .gc_freeze import SettledHeapFreezer
from .preflight import preflight
from .runtime import run_control_plane

log = logging.getLogger("kuma.cp")

#: Cycle-collector thresholds. With CPython's defaults (700, 10, 10) a fan-out to 10,000 proxies
#: promotes its in-flight responses to the oldest generation and sets off full collections of
#: every connection's objects: pauses of up to 2.4 s were measured (kuma-load --cp-gc-log).
#: Collecting the young generation every 50,000 allocations lets those objects die young; no
#: pause over 300 ms and no RSS growth at 10,000 proxies (benchmarks/RESULTS.md, kuma-load).
GC_THRESHOLDS = (50_000, 20, 100)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kuma-cp", description="Control plane of the Kuma service mesh (universal mode)."
    )
    parser.add_argument("--version", action="version", version=f"kuma-cp {kuma.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the control plane")
    run.add_argument(
        "-c", "--config-file", type=Path, help="YAML config (Kuma's keys); KUMA_* env overrides"
    )
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return parser


#: Seconds a SIGTERM/SIGINT leaves kuma-cp to stop cleanly before it exits regardless.
STOP_GRACE = 5.0


class _Stopper:
    """SIGTERM and SIGINT stop kuma-cp within :data:`STOP_GRACE` seconds, whatever it does.

    The handlers are plain ``signal`` handlers, not the event loop's: they run in the main
    thread between two bytecodes even while the loop is busy, ask the loop to cancel
    everything, and start a daemon timer that ends the process if the clean stop does not
    finish in time (a worker thread parsing a huge file, a loop stuck in a long computation,
    interpreter shutdown waiting for threads). A second signal exits at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, scope: anyio.CancelScope) -> None:
        self._loop = loop
        self._scope = scope
        self._stopping = False

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self._stopping:
            log.warning("second signal: exiting now", extra=logs.fields(signal=name))
            _exit_now(1)
        self._stopping = True
        log.info("shutting down", extra=logs.fields(signal=name, grace=STOP_GRACE))
        self._loop.call_soon_threadsafe(self._scope.cancel)
        timer = threading.Timer(STOP_GRACE, self._overdue)
        timer.daemon = True
        timer.start()

    def _overdue(self) -> None:
        log.error("did not stop within %s s: exiting now", STOP_GRACE)
        _exit_now(1)


def _exit_now(code: int) -> None:
    logging.shutdown()  # flush what was logged; then no cleanup, no waiting for threads
    sys.stdout.flush()
    os._exit(code)


async def _serve(config: CpConfig) -> None:
    async with anyio.create_task_group() as tg:
        loop = asyncio.get_running_loop()
        AcceptFailures().install(loop)
        _Stopper(loop, tg.cancel_scope).install()
        # Keeps the settled heap out of the young collections (kuma/cp/gc_freeze.py),
        # and collects what lost connections leave once many have gone.
        tg.start_soon(
            SettledHeapFreezer(departures=lost_connections, activity=connection_events).run
        )
        await run_control_plane(config)
        tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config_file, os.environ)
        preflight(config)
    except ConfigError as exc:
        print(f"kuma-cp: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(args.log_level or config.logging.level, config.logging.format)
    gc.set_threshold(*GC_THRESHOLDS)
    soft, hard = raise_soft_limit()
    log.info("open files limit", extra=logs.fields(soft=soft, hard=hard))
    try:
        anyio.run(_serve, config)
    except BaseException as exc:
        expected = _expected_failures(exc)
        if expected is None:
            raise
        if all(isinstance(f, StoreConfigError | ConfigError) for f in expected):
            # A store's options are checked when it opens, before anything is announced.
            for failure in expected:
                print(f"kuma-cp: configuration error: {failure}", file=sys.stderr)
            return 2
        for failure in expected:
            log.error("kuma-cp stopped: %s", failure)
        return 1
    log.info("kuma-cp stopped")
    if _busy_threads():
        # A worker thread still parsing a file nobody needs now: do not wait for it.
        _exit_now(0)
    return 0


def _busy_threads() -> bool:
    main_thread = threading.main_thread()
    return any(
        t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()
    )


def _expected_failures(exc: BaseException) -> list[BaseException] | None:
    """The failures an operator can fix (bad store config, store unreachable, port in use),
    unwrapped from task-group exception groups; None when ``exc`` holds anything else."""
    if isinstance(exc, BaseExceptionGroup):
        found: list[BaseException] = []
        for inner in exc.exceptions:
            unwrapped = _expected_failures(inner)
            if unwrapped is None:
                return None
            found.extend(unwrapped)
        return found
    if isinstance(exc, StoreError | ConfigError | OSError):
        return [exc]
    return None


if __name__ == "__main__":
    sys.exit(main())
