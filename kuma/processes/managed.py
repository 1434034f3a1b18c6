"""A long-running child: its own process session, output captured line by line, stopped by PID
(SIGTERM, then SIGKILL to its whole session)."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class ProcessFailed(AssertionError):
    """The child exited, or did not print what was awaited, in time (its output attached).
    An AssertionError: in a test it is the test's failure."""


class ManagedProcess:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        cpus: set[int] | None = None,
        max_lines: int | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        """``cpus``: pin the child (and the children it starts) to these CPUs; ``max_lines``:
        keep only the last lines of output; ``on_line``: called (from the reader thread) with
        each line as it arrives."""
        self.argv = list(argv)
        self.lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._on_line = on_line
        #: The child's work folder, when whoever started it chose one (kuma-cp's, for tests).
        self.work_dir: Path | None = None
        #: Folders removed once the process is stopped.
        self.cleanup: list[Path] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            self.argv,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        if cpus:
            # Set before it does any work; its children inherit it.
            os.sched_setaffinity(self.proc.pid, cpus)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if self._on_line is not None:
                self._on_line(line)
            with self._lock:
                self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def count(self, text: str) -> int:
        with self._lock:
            return sum(text in line for line in self.lines)

    def wait_for_line(self, text: str, timeout: float = 30.0) -> str:
        """Block until a line containing ``text`` appears (:class:`ProcessFailed` if the child
        exits first or the time runs out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for line in self.lines:
                    if text in line:
                        return line
            if self.proc.poll() is not None:
                self._finish()
                raise ProcessFailed(
                    f"{self.argv[0]} exited with {self.proc.returncode} before {text!r}:\n"
                    + self.output()[-8000:]
                )
            time.sleep(0.02)
        raise ProcessFailed(f"timed out waiting for {text!r}:\n" + self.output()[-8000:])

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signum)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._finish()
        return code

    def _finish(self) -> None:
        self._reader.join(timeout=5)
        if self.proc.stdout is not None and not self._reader.is_alive():
            self.proc.stdout.close()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole session if it does not exit in time."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._finish()
        for folder in self.cleanup:
            shutil.rmtree(folder, ignore_errors=True)
        return self.proc.returncode
