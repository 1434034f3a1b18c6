"""The processes a run starts: the control plane under test (kuma-cp or the baseline) and etcd.

Each runs in its own session, pinned to its CPUs, stopped by PID. A control plane's CPU time
and RSS are read with psutil (CPU includes its live children: the directory store parses files
in child processes at start-up).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from kuma import processes
from kuma.processes import free_port

__all__ = [
    "READY",
    "Etcd",
    "ManagedProcess",
    "Observed",
    "free_port",
    "run_queue_wait",
    "start_control_plane",
]

_PORT = re.compile(r"dp_port=(\d+)")
READY = "is ready"


class Observed:
    """A control plane the harness did not start (``--cp-pid``): measured, never stopped.
    The base of ``ManagedProcess``, which starts, measures and stops its own."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.ps = psutil.Process(pid)

    def cpu_seconds(self) -> float:
        try:
            times = self.ps.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    def rss(self) -> int:
        try:
            return int(self.ps.memory_info().rss)
        except psutil.Error:
            return 0

    def run_queue_wait(self) -> float:
        return run_queue_wait(self.pid)

    def stop(self, timeout: float = 0.0) -> int | None:
        return None


class ManagedProcess(Observed):
    """A process the harness starts (:class:`kuma.processes.ManagedProcess`), measures and
    stops; it also collects the GC pauses ``kuma.load.gcwrap`` reports."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cpus: set[int] | None = None,
    ) -> None:
        #: (time seen, generation, milliseconds) of each pause ``kuma.load.gcwrap`` reported.
        self.gc_pauses: list[tuple[float, int, float]] = []
        self.child = processes.ManagedProcess(
            argv, env=env, cpus=cpus, max_lines=5000, on_line=self._gc_pause
        )
        super().__init__(self.child.pid)

    def _gc_pause(self, line: str) -> None:
        if line.startswith("gc pause "):
            fields = dict(part.split("=", 1) for part in line.split()[2:4])
            self.gc_pauses.append((time.time(), int(fields["gen"]), float(fields["ms"])))

    def output(self) -> str:
        return self.child.output()

    def wait_for(self, pattern: str, timeout: float) -> str:
        try:
            return self.child.wait_for_line(pattern, timeout)
        except processes.ProcessFailed as failed:
            raise RuntimeError(str(failed)) from None

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its live children."""
        total = 0.0
        try:
            times = self.ps.cpu_times()
            total = times.user + times.system + times.children_user + times.children_system
            for child in self.ps.children(recursive=True):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
        except psutil.Error:
            pass
        return total

    def stop(self, timeout: float = 20.0) -> int | None:
        return self.child.stop(timeout)


def run_queue_wait(pid: int) -> float:
    """Seconds the process's threads spent runnable but waiting for a CPU (Linux schedstat):
    how much other processes on its CPUs held it back. 0 where schedstat is unavailable."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as file:
                total += int(file.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return total / 1e9


def start_control_plane(
    kind: str,
    *,
    store: str,
    location: str,
    port: int = 0,
    cpus: set[int] | None = None,
    log_level: str = "info",
    etcd_prefix: str = "/kuma",
    api_port: int = 0,
    extra_env: Mapping[str, str] | None = None,
    gc_log: bool = False,
    ready_timeout: float = 300.0,
    work_dir: str | None = None,
) -> tuple[ManagedProcess, int]:
    """Start ``kuma-cp`` (``kind="kuma"``) or the baseline server; return it and its ADS port.
    With ``work_dir`` kuma-cp runs as operators run it, TLS and dataplane tokens on (it writes
    ``kuma-cp.crt`` there); without, both are off."""
    env = {
        # The REST target writes through kuma-cp's own API into its memory store.
        "KUMA_STORE_TYPE": "memory" if store == "rest" else store,
        "KUMA_DP_SERVER_INTERFACE": "127.0.0.1",
        "KUMA_DP_SERVER_PORT": str(port),
        # Other listeners on free ports: several control planes may run on this machine.
        "KUMA_API_SERVER_HTTP_PORT": str(api_port),
        "KUMA_MONITORING_ASSIGNMENT_SERVER_PORT": "0",
        "KUMA_LOGGING_LEVEL": log_level,
        # The harness uses the plain-text API on loopback only.
        "KUMA_API_SERVER_HTTPS_ENABLED": "false",
    }
    if work_dir is not None:
        env["KUMA_GENERAL_WORK_DIR"] = work_dir
    else:
        # The insecure comparison run (--insecure), and the baseline, which has neither.
        env["KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE"] = "none"
        env["KUMA_DP_SERVER_TLS_ENABLED"] = "false"
    if store == "directory":
        env["KUMA_STORE_DIRECTORY_PATH"] = location
    elif store == "etcd":
        env["KUMA_STORE_ETCD_ENDPOINTS"] = location
        env["KUMA_STORE_ETCD_PREFIX"] = etcd_prefix
    env.update(extra_env or {})
    module = "kuma.cp.cli" if kind == "kuma" else "kuma.load.baseline"
    if gc_log:
        argv = [sys.executable, "-m", "kuma.load.gcwrap", module, "run"]
    else:
        argv = [sys.executable, "-m", module, "run"]
    process = ManagedProcess(argv, env, cpus)
    try:
        line = process.wait_for(READY, ready_timeout)
    except BaseException:
        # Never ready (or the run was cancelled): stop it, or it outlives the harness.
        process.stop()
        raise
    found = _PORT.search(line)
    if found is None:
        process.stop()
        raise RuntimeError(f"no dp_port in {line!r}")
    return process, int(found.group(1))


class Etcd:
    """A throw-away single-member etcd (:class:`kuma.processes.EtcdServer`, etcd's defaults)."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        self.data = tempfile.mkdtemp(prefix="kuma-load-etcd-")
        self.server = processes.EtcdServer(
            Path(self.data), "kuma-load", fault_tuning=False, cpus=cpus
        )
        try:
            self.server.start()
        except BaseException:
            shutil.rmtree(self.data, ignore_errors=True)
            raise
        self.endpoint = self.server.endpoint

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.data, ignore_errors=True)
