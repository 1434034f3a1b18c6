"""kuma-dp's metrics hijacker (Kuma v2.7: ``app/kuma-dp/pkg/dataplane/metrics``).

An HTTP server on a unix socket (the bootstrap request's ``metricsResources.socketPath``; the
control plane points the ``kuma:metrics:hijacker`` cluster of the proxy's
``kuma:metrics:prometheus`` listener at it). Every ``GET`` is answered with:

* the metrics of each application endpoint of ``aggregate`` (from the bootstrap's
  ``kumaSidecarConfiguration.metrics.aggregate``), fetched concurrently without the query,
  Prometheus' ``accept``, ``user-agent`` and ``x-prometheus-scrape-timeout-seconds`` headers
  passed on. An endpoint that fails or answers non-200 is left out (logged), as in Kuma;
* then Envoy's stats in Prometheus text format, from its admin API on 127.0.0.1
  (``/stats?format=prometheus&text_readouts=``, with the query the listener's route adds:
  Kuma's ``filter=<regex>`` and ``usedonly``). Kuma merges in whatever order the answers
  arrive; here the order is fixed.

The merged body drops OpenMetrics ``# EOF`` markers and blank lines; the content type is the
highest of the answers (OpenMetrics 1.0.0, 0.0.1, then Prometheus text), and an OpenMetrics
answer ends with one ``# EOF``. Not reproduced from Kuma: the rewriting of Envoy's cluster
stats (``MergeClustersForPrometheus``) and the MeshMetric/OpenTelemetry paths.

The socket is created with mode 0600 (only kuma-dp's user, which runs Envoy, may connect),
a stale file at the path is replaced unless another process still answers on it, and the file
is removed when the hijacker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp
import msgspec
from aiohttp import web

log = logging.getLogger("kuma.dp.metrics")

ENVOY_ADDRESS = "127.0.0.1"
#: Prometheus' request headers passed on to every endpoint (Kuma's list).
PASSED_HEADERS = ("accept", "user-agent", "x-prometheus-scrape-timeout-seconds")
OPENMETRICS_1 = "application/openmetrics-text; version=1.0.0; charset=utf-8"
OPENMETRICS_0 = "application/openmetrics-text; version=0.0.1; charset=utf-8"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
_TIMEOUT = aiohttp.ClientTimeout(total=10.0)
#: Where kuma-dp's own requests leave from under transparent proxying (Kuma's
#: ``inPassThroughIPv4``): the proxy's iptables rules let this source through to the
#: application instead of redirecting it into Envoy.
PASSTHROUGH_SOURCE = "127.0.0.6"


class Endpoint(msgspec.Struct, frozen=True):
    """One application endpoint to aggregate (Kuma's ``types.Aggregate``)."""

    name: str = ""
    address: str = ""
    port: int = 0
    path: str = ""


def endpoints_of(sidecar: Mapping[str, Any]) -> list[Endpoint]:
    """The ``metrics.aggregate`` entries of ``kumaSidecarConfiguration``; malformed ones are
    skipped (logged)."""
    metrics = sidecar.get("metrics")
    entries = metrics.get("aggregate") if isinstance(metrics, dict) else None
    found: list[Endpoint] = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            found.append(msgspec.convert(entry, Endpoint))
        except msgspec.ValidationError as exc:
            log.warning("metrics aggregate entry %r ignored: %s", entry, exc)
    return found


def _media(content_type: str) -> str:
    """The answer's format: one of the three above, or "" for anything else."""
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media == "text/plain":
        return PROMETHEUS_TEXT
    if media == "application/openmetrics-text":
        return OPENMETRICS_1 if "version=1.0.0" in params.replace(" ", "") else OPENMETRICS_0
    return ""


_PRIORITY = (OPENMETRICS_1, OPENMETRICS_0, PROMETHEUS_TEXT)


def merge(bodies: Sequence[bytes], content_types: Sequence[str]) -> tuple[bytes, str]:
    """Kuma's ``processMetrics`` and content type choice (see the module doc)."""
    known = [t for t in content_types if t in _PRIORITY]
    chosen = min(known, key=_PRIORITY.index) if known else PROMETHEUS_TEXT
    joined = b"\n".join(body.replace(b"# EOF", b"") for body in bodies)
    lines = [line for line in joined.split(b"\n") if line.strip()]
    merged = b"\n".join(lines) + b"\n"
    if chosen != PROMETHEUS_TEXT:
        merged += b"# EOF\n"
    return merged, chosen


class MetricsHijacker:
    """Serve merged metrics on the unix socket ``path`` from :meth:`start` to :meth:`stop`."""

    def __init__(
        self,
        path: str,
        envoy_admin_port: int,
        endpoints: Sequence[Endpoint] = (),
        *,
        transparent: bool = False,
    ) -> None:
        self.path = path
        self.envoy_admin_port = envoy_admin_port
        self.endpoints = tuple(endpoints)
        self._transparent = transparent
        self._runner: web.AppRunner | None = None
        self._envoy: aiohttp.ClientSession | None = None
        self._apps: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        listener = _bind_private(self.path)
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, listener).start()
        self._envoy = aiohttp.ClientSession(timeout=_TIMEOUT, trust_env=False)
        local = (PASSTHROUGH_SOURCE, 0) if self._transparent else None
        connector = aiohttp.TCPConnector(local_addr=local)
        self._apps = aiohttp.ClientSession(timeout=_TIMEOUT, trust_env=False, connector=connector)
        log.info("metrics hijacker listening on unix://%s", self.path)

    async def stop(self) -> None:
        for session in (self._envoy, self._apps):
            if session is not None:
                await session.close()
        self._envoy = self._apps = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def _metrics(self, request: web.Request) -> web.Response:
        headers = {h: request.headers[h] for h in PASSED_HEADERS if h in request.headers}
        # The route's query (filter, usedonly) kept in order, then Kuma's additions.
        query = [*request.query.items(), ("format", "prometheus"), ("text_readouts", "")]
        envoy_url = f"http://{ENVOY_ADDRESS}:{self.envoy_admin_port}/stats?{urlencode(query)}"
        assert self._envoy is not None
        assert self._apps is not None
        fetches = [self._get(self._apps, _app_url(e), headers, e.name) for e in self.endpoints]
        fetches.append(self._get(self._envoy, envoy_url, headers, "envoy"))
        answers = [a for a in await asyncio.gather(*fetches) if a is not None]
        body, content_type = merge([a[0] for a in answers], [a[1] for a in answers])
        return web.Response(body=body, headers={"content-type": content_type})

    async def _get(
        self, session: aiohttp.ClientSession, url: str, headers: Mapping[str, str], name: str
    ) -> tuple[bytes, str] | None:
        try:
            async with session.get(url, headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    log.info("%s answered %d at %s: left out", name, response.status, url)
                    return None
                return body, _media(response.headers.get("content-type", ""))
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("cannot scrape %s at %s: %s", name, url, exc or type(exc).__name__)
            return None


def _app_url(endpoint: Endpoint) -> str:
    host = f"[{endpoint.address}]" if ":" in endpoint.address else endpoint.address
    path = endpoint.path if endpoint.path.startswith("/") else "/" + endpoint.path
    return f"http://{host}:{endpoint.port}{path}"


def _bind_private(path: str) -> socket.socket:
    """A listening unix socket at ``path`` with mode 0600 from the start. A file already there
    is removed when nothing answers on it (a kuma-dp that died); a live one is an error."""
    if os.path.lexists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)
        else:
            raise OSError(f"metrics hijacker: {path} is served by another process (a kuma-dp?)")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        listener.bind(path)
    except OSError as exc:
        listener.close()
        detail = f"metrics hijacker: cannot listen on {path}: {exc.strerror}"
        raise OSError(exc.errno, detail) from None
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    listener.listen(128)
    return listener
