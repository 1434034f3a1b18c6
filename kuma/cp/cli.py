"""``kuma-cp``: the control-plane command."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from pathlib import Path

import anyio

import kuma
from kuma.store import StoreError

from . import logs
from .config import ConfigError, CpConfig, load_config
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


async def _serve(config: CpConfig) -> None:
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("shutting down", extra=logs.fields(signal=signal.Signals(signum).name))
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(stop_on_signal)
        await run_control_plane(config)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config_file, os.environ)
    except ConfigError as exc:
        print(f"kuma-cp: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(args.log_level or config.logging.level, config.logging.format)
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        anyio.run(_serve, config)
    except BaseException as exc:
        expected = _expected_failures(exc)
        if expected is None:
            raise
        for failure in expected:
            log.error("kuma-cp stopped: %s", failure)
        return 1
    log.info("kuma-cp stopped")
    return 0


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
