"""``POST /bootstrap`` over HTTP/1.1, on aiohttp's low-level server.

The low-level server (``aiohttp.web.Server``) is a plain asyncio protocol factory, so it can
be handed the connections of the dp server port that are not HTTP/2 (see
:mod:`kuma.xds.server.demux`): kuma-dp and Envoy then need one address, as with Kuma.

Replies: the bootstrap as YAML (``text/x-yaml``), or with ``Accept: application/json`` Kuma's
envelope ``{bootstrap: <YAML, base64>, kumaSidecarConfiguration: {...}}``. Errors use the REST
API's error document: 400 (not a request), 404 (no such Dataplane), 422 (field paths and
messages), 503 (store down). Nothing a client sends stops the server.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from kuma.resources import Dataplane, Mesh, ResourceKey, Violation, ZoneEgress, ZoneIngress
from kuma.store import NotFoundError, Store, StoreError

from .generator import GeneratorParams, generate, sidecar_configuration, to_yaml
from .request import BootstrapError, invalid, parse_request, resolve_dataplane
from .zone_proxy import ZONE_PROXY_KINDS, resolve_zone_ingress

log = logging.getLogger("kuma.bootstrap")

PATH = "/bootstrap"
#: A Dataplane with thousands of outbounds is still far below this.
MAX_BODY_BYTES = 1024 * 1024


def error_document(error: BootstrapError) -> dict[str, Any]:
    """Kuma's REST error shape, with the violations in all three spellings Kuma uses."""
    return {
        "type": "/std-errors",
        "status": error.status,
        "title": error.title,
        "detail": error.detail,
        "invalid_parameters": [{"field": v.field, "reason": v.message} for v in error.violations],
        "details": error.detail,
        "causes": [{"field": v.field, "message": v.message} for v in error.violations],
    }


def _fields(**values: Any) -> dict[str, Any]:
    """Structured log fields, in kuma-cp's convention (``extra={"fields": {...}}``)."""
    return {"fields": values}


def _json(status: int, document: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(document), content_type="application/json")


def _error(error: BootstrapError) -> web.Response:
    return _json(error.status, error_document(error))


def split_host(host: str) -> str:
    """The host part of a Host header: ``localhost:5678`` -> ``localhost``, ``[::1]:5678`` ->
    ``::1`` (Envoy wants the bare address)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def _is_ipv4(address: str) -> bool:
    """Whether the server's end of a connection is IPv4 (plain, or mapped into IPv6)."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return True
    return ip.version == 4 or (ip.version == 6 and ip.ipv4_mapped is not None)


def named_by_certificate(host: str, names: frozenset[str]) -> bool:
    """Whether a certificate with these subject names is valid for ``host`` (a wildcard
    ``*.example.com`` names exactly one label in its place, as TLS clients read it)."""
    host = host.lower().rstrip(".")
    if host in names:
        return True
    label, dot, rest = host.partition(".")
    return bool(dot and label) and f"*.{rest}" in names


class BootstrapHandler:
    """The request handler of the low-level server."""

    def __init__(self, store: Store, params: GeneratorParams) -> None:
        self._store = store
        self._params = params

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path != PATH:
            return _error(BootstrapError(404, "Not Found", f"no such path {request.path}"))
        if request.method != "POST":
            error = BootstrapError(405, "Method Not Allowed", f"{PATH} accepts POST only")
            response = _error(error)
            response.headers["Allow"] = "POST"
            return response
        try:
            return await self._bootstrap(request)
        except BootstrapError as error:
            level = logging.ERROR if error.status >= 500 else logging.WARNING
            log.log(
                level,
                "bootstrap refused",
                extra=_fields(status=error.status, client=request.remote, reason=str(error)),
            )
            return _error(error)

    async def _bootstrap(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await _read_body(request)
        parsed = parse_request(body)
        if self._params.require_token and not parsed.dataplane_token:
            raise invalid(
                [
                    Violation(
                        "dataplaneToken",
                        "required: this control plane authenticates proxies "
                        "(dpServer.authn.dpProxy.type: dpToken); give kuma-dp "
                        "--dataplane-token-file with a token from kumactl generate dataplane-token",
                    )
                ]
            )
        proxy: Dataplane | ZoneIngress | ZoneEgress
        if parsed.proxy_type in ZONE_PROXY_KINDS:
            proxy = await resolve_zone_ingress(parsed, self._store)
        else:
            proxy = await resolve_dataplane(parsed, self._store)
        # The address kuma-dp used reaches this server, and ADS is served on the same port.
        xds_host = split_host(request.host)
        names = self._params.certificate_names
        if self._params.tls and names and not named_by_certificate(xds_host, names):
            raise BootstrapError(
                400,
                "Bad Request",
                f"the proxy reaches the control plane as {xds_host!r}, which its certificate "
                f"does not name ({', '.join(sorted(names))}): Envoy would refuse the connection; "
                "use one of those names in --cp-address, or give kuma-cp a certificate that "
                "names it (general.tlsCertFile)",
            )
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        xds_port = int(sockname[1]) if sockname else 0
        ipv4 = _is_ipv4(sockname[0]) if sockname else True
        bootstrap = to_yaml(
            generate(proxy, parsed, self._params, xds_host=xds_host, xds_port=xds_port, ipv4=ipv4)
        )
        log.info(
            "bootstrap served",
            extra=_fields(
                mesh=proxy.mesh_name,
                name=proxy.name,
                proxy_type=parsed.proxy_type,
                ads=f"{xds_host}:{xds_port}",
            ),
        )
        if "application/json" in request.headers.get("Accept", ""):
            sidecar: dict[str, Any] = {}  # a zone proxy has no application beside it
            if isinstance(proxy, Dataplane):
                sidecar = sidecar_configuration(proxy, await _stored_mesh(self._store, proxy.mesh))
            envelope = {
                "bootstrap": base64.b64encode(bootstrap.encode()).decode(),
                "kumaSidecarConfiguration": sidecar,
            }
            return _json(200, envelope)
        return web.Response(status=200, text=bootstrap, content_type="text/x-yaml")


async def _stored_mesh(store: Store, name: str) -> Mesh | None:
    """The proxy's Mesh (for the metrics endpoints kuma-dp aggregates); None when absent."""
    try:
        stored = await store.get(ResourceKey(Mesh.TYPE, "", name))
    except NotFoundError:
        return None
    except StoreError as exc:
        detail = f"the store failed reading mesh {name!r}: {exc}"
        raise BootstrapError(503, "Service Unavailable", detail) from exc
    return stored.resource if isinstance(stored.resource, Mesh) else None


async def _read_body(request: web.BaseRequest) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BootstrapError(413, "Payload Too Large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BootstrapError(
            413, "Payload Too Large", f"the body exceeds {MAX_BODY_BYTES} bytes"
        ) from None
    except ConnectionError:
        # The client went away mid-body: one warning line (by the caller), no traceback.
        raise BootstrapError(
            400, "Bad Request", "the connection closed before the body ended"
        ) from None


class _BriefErrors(RequestHandler):
    """aiohttp answers a request it cannot parse with a 400 whose text quotes what it got (a
    64 KB line of garbage came back as a bigger reply): answer with the status alone."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        try:
            brief = f"{status} {HTTPStatus(status).phrase}"
        except ValueError:
            brief = str(status)
        return super().handle_error(request, status, exc, brief)


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _BriefErrors(self, loop=self._loop, **self._kwargs)


@asynccontextmanager
async def bootstrap_protocol(store: Store, params: GeneratorParams) -> AsyncIterator[web.Server]:
    """The low-level server as a protocol factory; closing shuts its connections down."""
    server = _Server(
        BootstrapHandler(store, params),
        access_log=None,  # kuma-cp logs each bootstrap itself, as a structured line
    )
    try:
        yield server
    finally:
        await server.shutdown(timeout=1.0)
