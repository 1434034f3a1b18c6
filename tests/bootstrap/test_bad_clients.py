"""Issue 17, defect 9: what a broken or hostile client gets from the dp port's HTTP/1.1 side:
a body cut mid-stream is one warning line (no traceback), garbage gets a brief 400."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kuma.bootstrap import GeneratorParams
from kuma.bootstrap.handler import bootstrap_protocol
from kuma.store.memory import MemoryStore

pytestmark = pytest.mark.anyio


async def test_a_cut_body_is_one_warning_and_garbage_a_brief_400(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with bootstrap_protocol(MemoryStore(), GeneratorParams()) as protocol:
        server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /bootstrap HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            await writer.drain()
            writer.close()
            async with asyncio.timeout(10):
                while True:
                    if any(r.name == "kuma.bootstrap" for r in caplog.records):
                        break
                    await asyncio.sleep(0.02)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"G" * 65536 + b"\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(10):
                reply = await reader.read()
            writer.close()
        finally:
            server.close()
    assert reply.startswith(b"HTTP/1.0 400 Bad Request")
    assert len(reply) < 1024
    assert b"GGGG" not in reply
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.INFO]
    (refused,) = [r for r in caplog.records if r.name == "kuma.bootstrap"]
    assert refused.levelno == logging.WARNING
