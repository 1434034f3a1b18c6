"""kumactl against a real kuma-cp process, and golden files.

kuma-cp runs as a user runs it (``python -m kuma.cp.cli run``, its own session, stopped by
PID), on loopback with OS-chosen ports: the API port is read from its ``kuma-cp is ready``
line. kumactl runs in-process through ``kuma.cli.main.main`` (fast, streams captured) and, where
the entry point itself matters (exit codes, stdin, the console script), as a process.

Golden files hold kumactl's output with what depends on the clock normalized: RFC 3339 times
become ``<time>`` and the AGE column of ``get`` tables (always the last one, so its width does
not move the other columns) becomes ``<age>``. ``UPDATE_GOLDEN=1`` rewrites them.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kuma.cli.main import main
from tests.fixtures.processes import ManagedProcess, kuma_cp

GOLDEN = Path(__file__).parent / "golden"
DATA = Path(__file__).parent / "data"
LOOPBACK = {
    "KUMA_DP_SERVER_INTERFACE": "127.0.0.1",
    "KUMA_DP_SERVER_PORT": "0",
    "KUMA_API_SERVER_HTTP_PORT": "0",
}


@dataclass
class ControlPlane:
    process: ManagedProcess
    url: str


@contextmanager
def running_cp(env: Mapping[str, str] | None = None) -> Iterator[ControlPlane]:
    process = kuma_cp(None, env={**LOOPBACK, **(env or {})})
    try:
        line = process.wait_for_line("kuma-cp is ready")
        match = re.search(r"api_port=(\d+)", line)
        assert match, line
        yield ControlPlane(process, f"http://127.0.0.1:{match.group(1)}")
    finally:
        assert process.stop() == 0, process.output()


@dataclass
class Result:
    code: int
    out: str
    err: str


class Kumactl:
    """kumactl in-process, pointed at ``url``, never reading the user's ~/.kumactl/config."""

    def __init__(self, url: str, env: Mapping[str, str] | None = None) -> None:
        self.env = {"KUMACTL_API_SERVER": url, "KUMACTL_CONFIG": os.devnull, **(env or {})}

    def __call__(self, *argv: str, stdin: str = "") -> Result:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), stdin=io.StringIO(stdin), stdout=out, stderr=err, environ=self.env)
        return Result(code, out.getvalue(), err.getvalue())

    def ok(self, *argv: str, stdin: str = "") -> str:
        result = self(*argv, stdin=stdin)
        assert (result.code, result.err) == (0, ""), result
        return result.out


def _without_kumactl(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment minus the caller's own KUMACTL_* settings."""
    return {k: v for k, v in environ.items() if not k.startswith("KUMACTL_")}


def run_process(
    *argv: str, env: Mapping[str, str], stdin: str = "", timeout: float = 30.0
) -> Result:
    """kumactl as its own process (``python -m kuma.cli``)."""
    done = subprocess.run(
        [sys.executable, "-m", "kuma.cli", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env={**_without_kumactl(os.environ), "KUMACTL_CONFIG": os.devnull, **env},
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
_AGE = re.compile(r"(\d+[smhdy]|never)$")


def normalize(text: str, *, age_column: bool = False) -> str:
    text = _TIME.sub("<time>", text)
    if age_column:
        lines = text.split("\n")
        body = [lines[0]]
        for line in lines[1:]:
            body.append(line if line.startswith("Rerun") else _AGE.sub("<age>", line))
        text = "\n".join(body)
    return text


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"output differs from {path}:\n{text}"
