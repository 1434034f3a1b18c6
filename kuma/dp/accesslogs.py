"""kuma-dp's access-log streamer (Kuma v2.7: ``app/kuma-dp/pkg/dataplane/accesslogs``).

Envoy has no plain-TCP access logger, so for MeshAccessLog's Tcp backend the control plane
points Envoy's file logger at a named pipe kuma-dp creates
(:func:`kuma.policies.accesslog_tcp.access_log_socket_name`). Each line Envoy writes is
``{"address": "host:port", "message": <string or object>}`` (or, from the older TrafficLog,
``host:port;message``); the streamer sends the message (an object as its JSON, newline
terminated) over a TCP connection per address, kept open and reused.

As Kuma: a destination that cannot be reached, or a send that fails, drops that one line
(logged) and the connection is redialled for the next one, so a misconfigured address cannot
fill the pipe or stop logging to the other addresses. The pipe is opened read-write so it
never reads end-of-file while Envoy reopens it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat

import msgspec

log = logging.getLogger("kuma.dp.accesslogs")

#: Kuma's ``defaultConnectTimeout`` for a TCP log destination.
CONNECT_TIMEOUT = 5.0


def parse_line(line: bytes) -> tuple[str, bytes] | None:
    """The destination and the bytes to send for one line of the pipe; None if malformed."""
    try:
        wrapped: object = msgspec.json.decode(line)
    except msgspec.DecodeError:
        target, sep, text = line.partition(b";")
        return (target.decode(errors="replace"), text) if sep else None
    if not isinstance(wrapped, dict):
        return None
    address, message = wrapped.get("address"), wrapped.get("message")
    if not isinstance(address, str):
        return None
    body = message.encode() if isinstance(message, str) else msgspec.json.encode(message)
    # Kuma appends a newline to every JSON-wrapped message, also to the text ones that end in
    # one already (its plugin adds one to the format): the destination sees an empty line.
    return address, body + b"\n"


class AccessLogStreamer:
    """Reads the pipe at ``path`` and forwards each line to its TCP destination."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._writers: dict[str, asyncio.StreamWriter] = {}
        self._task: asyncio.Task[None] | None = None
        self._transport: asyncio.ReadTransport | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISFIFO(os.lstat(self.path).st_mode):
                raise OSError(f"access log pipe: {self.path} exists and is not a pipe")
            os.unlink(self.path)  # a pipe left by an earlier run, as Kuma cleans it
        os.mkfifo(self.path, 0o600)
        fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        pipe = os.fdopen(fd, "rb", buffering=0)
        self._transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        self._task = asyncio.create_task(self._stream(reader))
        log.info("access log streamer reading %s", self.path)

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()  # closes the pipe's file
        if self._task is not None:
            # Bounded: Python 3.11's wait_for can swallow a cancellation (the connect in
            # _send), and an unbounded await then held kuma-dp's exit for good.
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=2.0)
            if self._task.done() and not self._task.cancelled():
                self._task.exception()  # retrieved: the loop's end needs no report
        for writer in self._writers.values():
            writer.close()
            # A destination that stopped reading must not hold up kuma-dp's exit.
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
        self._writers.clear()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _stream(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as exc:  # drop an over-long line, keep going
                await reader.readexactly(exc.consumed)
                log.error("access log line over %d bytes dropped", 1 << 20)
                continue
            parsed = parse_line(line)
            if parsed is None:
                log.error("access log line dropped: not {address, message} nor address;msg")
                continue
            await self._send(*parsed)

    async def _send(self, address: str, message: bytes) -> None:
        try:
            writer = self._writers.get(address) or await self._connect(address)
            writer.write(message)
            await writer.drain()
        except (OSError, ValueError, TimeoutError) as exc:
            log.error("access log to %s dropped: %s", address, exc)
            dropped = self._writers.pop(address, None)
            if dropped is not None:
                dropped.close()

    async def _connect(self, address: str) -> asyncio.StreamWriter:
        host, _, port = address.rpartition(":")
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port)), CONNECT_TIMEOUT
        )
        self._writers[address] = writer
        log.info("connected to TCP log destination %s", address)
        return writer
