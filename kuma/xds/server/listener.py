"""A grpclib server listening on a port for as long as a context is open: the ADS server and
global's KDS server (kuma/kds/server.py) both run this way."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ssl import SSLContext

import anyio
from grpclib.server import Server

log = logging.getLogger(__name__)

#: Pending connections the listener queues (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 4096

#: Seconds the listener waits, once closing, for the server to report itself closed.
_CLOSE_GRACE = 2.0


@asynccontextmanager
async def listening(
    server: Server,
    host: str,
    port: int,
    ssl: SSLContext | None,
    *,
    what: str,
    encrypted: bool = False,
) -> AsyncIterator[int]:
    """Serve on ``host:port`` (0: a free port) while open; yields the port bound. ``ssl`` is
    asyncio's TLS; ``encrypted`` says the server's protocols do TLS themselves."""
    # Bind the socket here so that the port actually bound (port 0) can be reported.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    try:
        # A control-plane restart reconnects every client at once: with asyncio's default
        # backlog of 100 the rest of the SYNs are dropped and retried a second later.
        await server.start(sock=sock, backlog=LISTEN_BACKLOG, ssl=ssl)
    except BaseException:
        sock.close()
        raise
    bound: int = sock.getsockname()[1]
    log.info(
        "%s listening on %s:%d (%s)", what, host, bound, "TLS" if ssl or encrypted else "plain text"
    )
    try:
        yield bound
    finally:
        server.close()
        # Bounded: grpclib leaves idle client connections open, and from Python 3.12 asyncio
        # waits for every connection to close; the streams themselves end right away.
        with anyio.move_on_after(_CLOSE_GRACE, shield=True):
            await server.wait_closed()
