"""The Envoy configuration kuma-cp serves one proxy now, as JSON, with private keys redacted.

Read from the engine through the same :class:`~kuma.xds.source.ConfigSource` seam the ADS
streams use, so it is exactly what a connected proxy was sent (or will be sent on connect), not
a separate generation that could differ. Kuma answers the same path with ``{"xds": {type URL:
{name: resource}}}``; so do we, with each resource's content version beside it under
``versions`` (the version a proxy ACKs) and, under ``certificates``, who each served SDS
Secret's certificates name and when they expire.

Admin only (loopback callers, or the admin token), like the config dump at ``/xds``.
Secrets never leave: every ``privateKey`` (TLS certificates), ``password`` and generic
``secret`` in the JSON is replaced by :data:`REDACTED`, whatever resource type holds it, so a
type added later (SDS secrets) is covered without touching this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message

from kuma.api import ApiError
from kuma.api.access import require_admin
from kuma.resources import ResourceKey
from kuma.store import NotFoundError, Store
from kuma.xds.snapshot import VersionedResource
from kuma.xds.source import ConfigSource
from kuma.xds.types import SECRET, SEND_ORDER

from .certificates import certificates

REDACTED = "[redacted]"
#: JSON keys (protojson's camelCase) whose values are secret wherever they appear.
_SECRET_KEYS = frozenset({"privateKey", "password", "secret"})
_TYPE_PREFIX = "type.googleapis.com/"
PATH = "/meshes/{mesh}/dataplanes/{name}/_config"


def redact(value: Any) -> Any:
    """A copy of a JSON value with every secret-bearing field's value replaced."""
    if isinstance(value, dict):
        return {k: REDACTED if k in _SECRET_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _message_class(type_url: str) -> type[Message]:
    full_name = type_url.removeprefix(_TYPE_PREFIX)
    descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    return message_factory.GetMessageClass(descriptor)


def resource_json(resource: VersionedResource) -> dict[str, Any]:
    """One served resource as protojson (camelCase), redacted."""
    try:
        message = _message_class(resource.type_url)()
        message.ParseFromString(resource.body)
        document = json_format.MessageToDict(message)
    except (KeyError, DecodeError, TypeError) as exc:
        # Not expected for anything the engine builds; shown rather than failing the page.
        return {"error": f"cannot render {resource.type_url}: {exc}"}
    return {"@type": resource.type_url, **redact(document)}


def _snapshot(served: Mapping[str, Mapping[str, VersionedResource]]) -> dict[str, Any]:
    xds: dict[str, dict[str, Any]] = {}
    versions: dict[str, dict[str, str]] = {}
    for type_url, resources in served.items():
        if not resources:
            continue
        xds[type_url] = {name: resource_json(r) for name, r in sorted(resources.items())}
        versions[type_url] = {name: r.version for name, r in sorted(resources.items())}
    secrets = served.get(SECRET, {})
    found = {name: certificates(secrets[name]) for name in sorted(secrets)}
    return {
        "xds": xds,
        "versions": versions,
        "certificates": {name: certs for name, certs in found.items() if certs},
    }


async def served_config(source: ConfigSource, mesh: str, name: str) -> dict[str, Any]:
    """What ``source`` serves the proxy ``<mesh>.<name>`` now."""
    async with source.watch_proxy(f"{mesh}.{name}") as watch:
        # Copied before the context closes: the views are only valid while it is open.
        served = {type_url: dict(watch.resources(type_url)) for type_url in SEND_ORDER}
    return _snapshot(served)


def served_config_routes(store: Store, source: ConfigSource) -> list[web.RouteDef]:
    """The read-only route to add to the REST API."""

    async def handle(request: web.Request) -> web.StreamResponse:
        # Admin only, like the config dump (``/xds``): it shows certificates and the topology.
        require_admin(request, "a proxy's served configuration")
        mesh, name = request.match_info["mesh"], request.match_info["name"]
        try:
            await store.get(ResourceKey("Dataplane", mesh, name))
        except NotFoundError:
            raise ApiError(404, "Could not retrieve a proxy config", "Not found") from None
        return web.json_response(await served_config(source, mesh, name))

    return [web.get(PATH, handle)]
