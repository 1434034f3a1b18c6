"""MADS v1 over REST, as Prometheus' ``kuma_sd`` uses it (Kuma's ``pkg/mads/v1/service``):
``POST /v3/discovery:monitoringassignments`` with a DiscoveryRequest (protobuf JSON).

Kuma's fetch semantics: the ``fetch-timeout`` query parameter (a Go duration; absent:
``defaultFetchTimeout``) bounds a long poll. A request whose ``version_info`` differs from the
current version is answered at once (200, every assignment or the ``resource_names`` asked
for); one with the current version is held until the assignments change (200) or the timeout
passes (304 Not Modified, Prometheus keeps what it has). A timeout of 0 or less answers at
once (304 when current). Kuma serves MADS v1 over HTTP only (its gRPC service definition is
not served by kuma-cp 2.7), so neither is gRPC here.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from kuma.api.errors import ApiError
from kuma.cp.config import parse_duration

from .index import AssignmentIndex

FETCH_PATH = "/v3/discovery:monitoringassignments"
#: A DiscoveryRequest is small (Prometheus sends its version, nonce, node id and type).
MAX_REQUEST_BYTES = 64 * 1024

# DiscoveryRequest's fields, under both JSON names protobuf accepts. Kuma's ``jsonpb``
# refuses any other key; so does this.
_FIELDS = {
    "version_info": "version_info",
    "versionInfo": "version_info",
    "node": "node",
    "resource_names": "resource_names",
    "resourceNames": "resource_names",
    "resource_locators": "resource_locators",
    "resourceLocators": "resource_locators",
    "type_url": "type_url",
    "typeUrl": "type_url",
    "response_nonce": "response_nonce",
    "responseNonce": "response_nonce",
    "error_detail": "error_detail",
    "errorDetail": "error_detail",
}


class FetchRequest:
    def __init__(self, version: str, names: tuple[str, ...]) -> None:
        self.version = version
        self.names = names


def _bad(title: str, detail: str) -> web.Response:
    return ApiError(400, title, detail).response()


def parse_request(body: bytes) -> FetchRequest:
    """The fields MADS reads; ValueError naming the field otherwise."""
    try:
        document: Any = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("a DiscoveryRequest must be a JSON object")
    fields: dict[str, Any] = {}
    for key, value in document.items():
        field = _FIELDS.get(key)
        if field is None:
            raise ValueError(f"unknown field {key!r} in a DiscoveryRequest")
        fields[field] = value
    # protobuf JSON: null is the field's default.
    version = fields.get("version_info")
    version = "" if version is None else version
    if not isinstance(version, str):
        raise ValueError("version_info: must be a string")
    names = fields.get("resource_names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("resource_names: must be a list of strings")
    node = fields.get("node")
    if node is not None and not isinstance(node, dict):
        raise ValueError("node: must be an object")
    return FetchRequest(version, tuple(names))


def _fetch_timeout(text: str) -> float:
    """Go's ``time.ParseDuration``, sign included (a negative timeout answers at once)."""
    if text[:1] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        return sign * parse_duration(text[1:])
    return parse_duration(text)


def mads_app(index: AssignmentIndex, default_fetch_timeout: float) -> web.Application:
    async def fetch(request: web.Request) -> web.Response:
        try:
            parsed = parse_request(await request.read())
        except ValueError as exc:
            return _bad("Could not parse request body", str(exc))
        raw_timeout = request.query.get("fetch-timeout", "")
        try:
            timeout = _fetch_timeout(raw_timeout) if raw_timeout else default_fetch_timeout
        except ValueError as exc:
            return _bad("Could not parse fetch-timeout", str(exc))
        if timeout > 0:
            changed = await index.wait_for_change(parsed.version, timeout)
        else:
            changed = parsed.version != index.version
        if not changed:
            return web.Response(status=304)
        return web.Response(body=index.response(parsed.names), content_type="application/json")

    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app.router.add_post(FETCH_PATH, fetch)
    return app
