"""The aiohttp application of the REST API: routes, the error and access middlewares, the
index (``GET /``)."""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

import kuma
from kuma.multizone import Authoring
from kuma.store import Store, StoreUnavailableError

from .access import access_middleware
from .errors import ApiError
from .handlers import CONTEXT, Context, add_routes, json_response
from .insights import InsightProvider, NoInsights
from .rules import get_gateway_rules, get_rules
from .zone_overviews import add_routes as add_zone_overviews

log = logging.getLogger("kuma.api")

PRODUCT = "Kuma"


@dataclass(frozen=True)
class ApiSettings:
    """The ``apiServer`` part of kuma-cp's configuration."""

    interface: str = "127.0.0.1"
    port: int = 5681
    #: ``apiServer.auth.adminToken``; empty: only loopback callers may write.
    admin_token: str = ""
    #: ``apiServer.maxRequestBytes``.
    max_request_bytes: int = 1024 * 1024
    #: This control plane's instance id (the index's ``instanceId``, the same id the insights
    #: record as ``controlPlaneInstanceId``); empty: the host name and a random suffix.
    instance_id: str = ""
    #: Which kinds this control plane authors (``mode``; kuma/multizone/authoring.py).
    authoring: Authoring = field(default_factory=Authoring)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as Kuma's error JSON: ours, aiohttp's (no such path, wrong method) and
    the store's (unavailable: 503; anything unexpected: 500, logged)."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        detail = f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
        return ApiError(405, "Method not Allowed", detail).response()
    except web.HTTPNotFound:
        return ApiError(404, "Not Found", f"no such path: {request.path}").response()
    except web.HTTPException as exc:
        return ApiError(exc.status, exc.reason, exc.text or exc.reason).response()
    except StoreUnavailableError as exc:
        # Stores word these without server paths (they log those themselves).
        log.warning(
            "store unavailable: %s",
            exc,
            extra={"fields": {"method": request.method, "path": request.path}},
        )
        return ApiError(503, "Service unavailable", str(exc)).response()
    except Exception:
        log.exception("request failed", extra={"fields": {"path": request.path}})
        return ApiError(500, "Internal Server Error", "Internal Server Error").response()


def _index_handler(hostname: str, instance_id: str) -> Handler:
    document = {
        "hostname": hostname,
        # Kuma keeps ``tagline`` (deprecated) beside ``product``; clients read either.
        "tagline": PRODUCT,
        "product": PRODUCT,
        "version": kuma.__version__,
        "instanceId": instance_id,
    }

    async def index(request: web.Request) -> web.StreamResponse:
        return json_response(document)

    return index


def build_app(
    store: Store,
    settings: ApiSettings,
    insights: InsightProvider | None = None,
    extra_routes: Iterable[web.RouteDef] = (),
) -> web.Application:
    """``extra_routes``: what other components serve on the API port (``GET /metrics``)."""
    app = web.Application(
        middlewares=[error_middleware, access_middleware(settings.admin_token)],
        # aiohttp's own cut-off for bodies without a Content-Length; see body.read_body.
        client_max_size=settings.max_request_bytes,
    )
    app[CONTEXT] = Context(
        store, insights or NoInsights(), settings.max_request_bytes, settings.authoring
    )
    hostname = socket.gethostname()
    instance_id = settings.instance_id or f"{hostname}-{secrets.token_hex(2)}"
    app.router.add_get("/", _index_handler(hostname, instance_id))
    add_zone_overviews(app)  # before the generic routes: /zones/{name} would take _overview
    add_routes(app)
    app.router.add_get("/meshes/{mesh}/dataplanes/{name}/_rules", get_rules)
    app.router.add_get("/meshes/{mesh}/meshgateways/{name}/_rules", get_gateway_rules)
    app.router.add_routes(extra_routes)
    return app
