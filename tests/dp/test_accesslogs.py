"""kuma-dp's access-log streamer: lines written to its pipe (as Envoy's file logger does for a
MeshAccessLog Tcp backend) reach their TCP destinations; bad lines and unreachable
destinations drop one line each and the rest keep flowing."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from kuma.dp.accesslogs import AccessLogStreamer, parse_line

pytestmark = pytest.mark.anyio


def test_lines_are_parsed_as_kumas_streamer() -> None:
    assert parse_line(b'{"address": "h:1", "message": "a b\\n"}\n') == ("h:1", b"a b\n\n")
    assert parse_line(b'{"address": "h:1", "message": {"k": "v"}}\n') == ("h:1", b'{"k":"v"}\n')
    assert parse_line(b"h:1;legacy line\n") == ("h:1", b"legacy line\n")
    assert parse_line(b"no separator\n") is None
    assert parse_line(b'{"message": "x"}\n') is None


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_pipe_lines_reach_their_destination(tmp_path: Path) -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def collect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            await received.put(line)
        writer.close()

    server = await asyncio.start_server(collect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipe = tmp_path / "kuma-al-web-default.sock"
    pipe.write_text("stale")  # not a pipe: refused, never deleted
    with pytest.raises(OSError, match="not a pipe"):
        await AccessLogStreamer(str(pipe)).start()
    pipe.unlink()
    streamer = AccessLogStreamer(str(pipe))
    await streamer.start()
    try:
        assert pipe.is_fifo()
        assert (pipe.stat().st_mode & 0o777) == 0o600
        fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
        lines = [
            b"garbage\n",
            f'{{"address": "127.0.0.1:{_closed_port()}", "message": "lost"}}\n'.encode(),
            f'{{"address": "127.0.0.1:{port}", "message": {{"dst": "backend"}}}}\n'.encode(),
            f"127.0.0.1:{port};legacy\n".encode(),
        ]
        os.write(fd, b"".join(lines))
        os.close(fd)
        first = await asyncio.wait_for(received.get(), 10)
        second = await asyncio.wait_for(received.get(), 10)
        assert [first, second] == [b'{"dst":"backend"}\n', b"legacy\n"]
    finally:
        await streamer.stop()
        server.close()
    assert not pipe.exists()
