"""kuma-dp's readiness reporter (Kuma 2.7.7+: ``app/kuma-dp/pkg/dataplane/readiness``).

An HTTP server on 127.0.0.1 answering ``GET /ready``. The control plane routes the proxy's
public ``/ready`` (the ``kuma:envoy:admin`` listener) to it through the ``kuma:readiness``
cluster when the bootstrap request announced its port. It answers:

* ``200 READY`` while Envoy's own admin ``/ready`` says LIVE;
* ``503 TERMINATING`` from the moment kuma-dp starts draining (a SIGTERM or SIGINT), so load
  balancers stop sending new traffic before Envoy stops accepting it;
* ``503 <Envoy's state>`` (``PRE_INITIALIZING``, ``INITIALIZING``, or ``NOT READY`` when its
  admin API does not answer) otherwise.

Kuma 2.7 answers READY whenever it is not terminating, even before Envoy has its listeners;
asking Envoy keeps the answer "ready" meaning what Envoy's own ``/ready`` meant before.

The port: ``--readiness-port`` / ``KUMA_READINESS_PORT`` (Kuma's ``dataplane.readinessPort``);
0 turns the reporter off (Envoy's ``/ready`` is exposed as before). Kuma's default is 9902;
here the default is a free port chosen at start, so several sidecars on one host never clash
(the port is only reached through Envoy, never by a user).
"""

from __future__ import annotations

import logging
import socket

import aiohttp
from aiohttp import web

log = logging.getLogger("kuma.dp.readiness")

ADDRESS = "127.0.0.1"
READY = "READY"
TERMINATING = "TERMINATING"
NOT_READY = "NOT READY"
_ENVOY_TIMEOUT = aiohttp.ClientTimeout(total=1.0)
_HEADERS = {"cache-control": "no-cache, max-age=0", "x-powered-by": "kuma-dp"}


class ReadinessReporter:
    """Serve readiness on ``ADDRESS:port`` (0: a free port) from :meth:`start` to :meth:`stop`."""

    def __init__(self, port: int = 0) -> None:
        self._requested_port = port
        self.port = 0
        #: Envoy's admin port, once the bootstrap is known (until then: not ready).
        self.envoy_admin_port: int | None = None
        self.terminating = False
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((ADDRESS, self._requested_port))
        except OSError as exc:
            listener.close()
            raise OSError(
                exc.errno,
                f"readiness reporter: cannot listen on {ADDRESS}:"
                f"{self._requested_port}: {exc.strerror}",
            ) from None
        self.port = int(listener.getsockname()[1])
        app = web.Application()
        app.router.add_get("/ready", self._ready)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, listener).start()
        self._session = aiohttp.ClientSession(timeout=_ENVOY_TIMEOUT, trust_env=False)
        log.info("readiness reporter listening on %s:%d", ADDRESS, self.port)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def set_terminating(self) -> None:
        if not self.terminating:
            log.info("readiness: %s", TERMINATING)
        self.terminating = True

    async def state(self) -> str:
        """READY, TERMINATING, or why the proxy is not ready."""
        if self.terminating:
            return TERMINATING
        if self.envoy_admin_port is None or self._session is None:
            return NOT_READY
        url = f"http://{ADDRESS}:{self.envoy_admin_port}/ready"
        try:
            async with self._session.get(url) as response:
                text = (await response.text()).strip()
                if response.status == 200:
                    return READY
        except (aiohttp.ClientError, TimeoutError):
            return NOT_READY
        return text or NOT_READY

    async def _ready(self, request: web.Request) -> web.Response:
        state = await self.state()
        status = 200 if state == READY else 503
        log.debug("readiness %s to %s", state, request.remote)
        return web.Response(status=status, text=state, headers=_HEADERS)
