"""kuma/open_files.py: the soft limit raised, and running out of descriptors logged once per
interval instead of once per pending connection, with the loop still serving."""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
import subprocess
import sys

import pytest

from kuma.open_files import AcceptFailures, Every, raise_soft_limit

_LOWERED = 128


def _lower_soft_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (_LOWERED, hard))


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    code = "from kuma.open_files import raise_soft_limit; print(*raise_soft_limit())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=_lower_soft_limit,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    soft, hard = map(int, out)
    _soft, expected = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert (soft, hard) == (expected, expected)
    assert soft > _LOWERED
    # Already raised: nothing to do, same answer.
    assert raise_soft_limit()[0] == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_every_reports_the_first_event_then_once_per_interval_with_the_count() -> None:
    every = Every(interval=3600)
    assert every.due() == 1
    assert [every.due() for _ in range(5)] == [0] * 5
    every.interval = 0
    assert every.due() == 6  # the five held back and this one


def test_other_loop_errors_go_to_the_default_handler(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        handler = AcceptFailures()
        handler(loop, {"message": "something else", "exception": ValueError("boom")})
        error = OSError(errno.ECONNRESET, "reset")
        handler(loop, {"message": "socket.accept() out of system resource", "exception": error})
    finally:
        loop.close()
    assert handler.failures == 0
    assert [r.name for r in caplog.records] == ["asyncio", "asyncio"]


_SERVER = """
import asyncio, logging, resource, sys
from kuma.open_files import AcceptFailures

logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(levelname)s %(message)s")
_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))

async def main():
    loop = asyncio.get_running_loop()
    handler = AcceptFailures(interval=3600)
    handler.install(loop)
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, backlog=4096)
    print("port", server.sockets[0].getsockname()[1], flush=True)
    # Serve until told to stop on stdin; then say how many accepts failed.
    await loop.run_in_executor(None, sys.stdin.readline)
    print("failures", handler.failures, flush=True)

asyncio.run(main())
"""


def test_running_out_of_descriptors_is_one_warning_and_the_loop_keeps_serving() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as server:
        clients: list[socket.socket] = []
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline().split()[1])
            # Far more connections than the server's 64 descriptors: the rest are not accepted.
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(150)]
            # Past its limit the server's loop still runs: it takes the line and answers.
            output, _ = server.communicate("stop\n", timeout=20)
        finally:
            for sock in clients:
                sock.close()
            if server.poll() is None:
                server.kill()
    assert server.returncode == 0, output
    lines = output.splitlines()
    warnings = [line for line in lines if line.startswith("WARNING")]
    failures = int(next(line for line in lines if line.startswith("failures")).split()[1])
    assert failures > 1, output
    assert len(warnings) == 1, output
    assert "cannot accept connections" in warnings[0]
    assert "open files limit 64" in warnings[0]
    assert "Traceback" not in output
