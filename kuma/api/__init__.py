"""Kuma's REST API (``pkg/api-server``) on aiohttp: resources, Dataplane overviews, access.

Depends on the resource and store rooms only; kuma-cp runs :func:`serve_api` as a component.
"""

from __future__ import annotations

from .access import is_loopback
from .app import ApiSettings, build_app
from .errors import ApiError
from .insights import InsightProvider, NoInsights
from .server import ApiServer, serve_api

__all__ = [
    "ApiError",
    "ApiServer",
    "ApiSettings",
    "InsightProvider",
    "NoInsights",
    "build_app",
    "is_loopback",
    "serve_api",
]
