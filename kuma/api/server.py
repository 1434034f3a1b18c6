"""Running the REST API: an aiohttp AppRunner and TCPSite owned by an async context manager,
and :func:`serve_api`, the kuma-cp component that runs it inside an anyio task group."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from types import TracebackType

import anyio
from aiohttp import web
from anyio.abc import TaskStatus

from kuma.store import Store

from .app import ApiSettings, build_app
from .insights import InsightProvider

log = logging.getLogger("kuma.api")

# How long a stop waits for requests in flight before closing their connections.
SHUTDOWN_GRACE = 3.0


class ApiServer:
    """Serves ``app`` on ``host:port`` between ``start()`` and ``close()``.

    ``close()`` is idempotent and shielded, so it completes when the surrounding task is being
    cancelled (kuma-cp's SIGTERM) and is harmless when called twice or after a failed start.
    """

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        https: tuple[str, int, ssl.SSLContext] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``https``: also serve the same application with TLS on (interface, port);
        ``tls``: serve ``host:port`` itself with TLS."""
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE)
        self._host = host
        self._port = port
        self._https = https
        self._tls = tls
        self._started = False
        self._closed = False
        self.port = 0
        self.https_port = 0

    async def start(self) -> int:
        """Bind and serve; the bound port (``port`` 0 picks a free one)."""
        if self._started or self._closed:
            raise RuntimeError("an ApiServer starts once")
        self._started = True
        try:
            await self._runner.setup()
            await web.TCPSite(self._runner, self._host, self._port, ssl_context=self._tls).start()
            if self._https is not None:
                host, port, context = self._https
                await web.TCPSite(self._runner, host, port, ssl_context=context).start()
        except BaseException:
            await self.close()
            raise
        self.port = int(self._runner.addresses[0][1])
        if self._https is not None:
            self.https_port = int(self._runner.addresses[-1][1])
        return self.port

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Bounded and shielded: cleanup waits for handlers up to SHUTDOWN_GRACE, and must run
        # to the end even when the task that owns the server is being cancelled.
        with anyio.move_on_after(SHUTDOWN_GRACE + 2, shield=True):
            await self._runner.cleanup()

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def serve_api(
    store: Store,
    settings: ApiSettings,
    insights: InsightProvider | None = None,
    extra_routes: Iterable[web.RouteDef] = (),
    *,
    https: tuple[str, int, ssl.SSLContext] | None = None,
    task_status: TaskStatus[tuple[int, int]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the REST API until cancelled; ``task_status.started`` gets the bound ports
    (HTTP, HTTPS; 0 without HTTPS)."""
    app = build_app(store, settings, insights, extra_routes)
    async with ApiServer(app, settings.interface, settings.port, https=https) as server:
        log.info(
            "API server listening",
            extra={
                "fields": {
                    "interface": settings.interface,
                    "port": server.port,
                    "https": f"{https[0]}:{server.https_port}" if https else "off",
                }
            },
        )
        task_status.started((server.port, server.https_port))
        await anyio.sleep_forever()
