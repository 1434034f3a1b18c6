"""``GET /metrics`` on the REST API's aiohttp application (Prometheus text format)."""

from __future__ import annotations

from aiohttp import web

from .metrics import CONTENT_TYPE, Metrics

PATH = "/metrics"


def metrics_routes(metrics: Metrics) -> list[web.RouteDef]:
    """The route to add to the API application."""

    async def scrape(request: web.Request) -> web.StreamResponse:
        # Rendering is synchronous and small (a few hundred series): no need to off-load it.
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    return [web.get(PATH, scrape)]
