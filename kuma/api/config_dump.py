"""``GET /meshes/{mesh}/dataplanes/{name}/xds``: what the control plane serves one proxy, in the
shape of Envoy's ``/config_dump`` (what ``kumactl inspect dataplane NAME --type=config-dump``
prints).

Kuma asks the proxy's Envoy for its dump; here the control plane answers from its own desired
state (the config source every ADS stream reads), so it also works for a proxy that is not
connected (its config is assembled for the request). Private keys are replaced by
``[redacted]``, as Envoy's own dump does. Admin only (Kuma's ``access.static.viewConfigDump``
default), since it still shows certificates and the whole topology.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from envoy.admin.v3 import config_dump_pb2, config_dump_shared_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.resources import ResourceKey
from kuma.store import NotFoundError, Store
from kuma.xds.generate import types
from kuma.xds.snapshot import VersionedResource
from kuma.xds.source import ConfigSource

from .access import require_admin
from .errors import not_found

REDACTED = b"[redacted]"


def _parse(cls: Any, resource: VersionedResource) -> Any:
    message = cls()
    message.ParseFromString(resource.body)
    return message


def _sorted(resources: Iterable[VersionedResource]) -> list[VersionedResource]:
    return sorted(resources, key=lambda r: r.name)


def _redacted(cluster: cluster_pb2.Cluster) -> cluster_pb2.Cluster:
    """``cluster`` with the private keys of its upstream TLS contexts (an ExternalService's
    inline client key) replaced, as Envoy's own dump does."""
    sockets = [m.transport_socket for m in cluster.transport_socket_matches]
    if cluster.HasField("transport_socket"):
        sockets.append(cluster.transport_socket)
    for socket in sockets:
        context = tls_pb2.UpstreamTlsContext()
        if not socket.typed_config.Unpack(context):
            continue
        certificates = context.common_tls_context.tls_certificates
        if not any(c.HasField("private_key") for c in certificates):
            continue
        for certificate in certificates:
            if certificate.HasField("private_key"):
                certificate.private_key.Clear()
                certificate.private_key.inline_bytes = REDACTED
        socket.typed_config.Pack(context)
    return cluster


def config_dump(resources: Callable[[str], Iterable[VersionedResource]]) -> dict[str, Any]:
    """Envoy's ConfigDump of the resources ``resources(type_url)`` returns."""
    clusters = config_dump_shared_pb2.ClustersConfigDump()
    for r in _sorted(resources(types.CLUSTER)):
        entry = clusters.dynamic_active_clusters.add(version_info=r.version)
        entry.cluster.Pack(_redacted(_parse(cluster_pb2.Cluster, r)))
    endpoints = config_dump_shared_pb2.EndpointsConfigDump()
    for r in _sorted(resources(types.ENDPOINT)):
        entry = endpoints.dynamic_endpoint_configs.add(version_info=r.version)
        entry.endpoint_config.Pack(_parse(endpoint_pb2.ClusterLoadAssignment, r))
    listeners = config_dump_shared_pb2.ListenersConfigDump()
    for r in _sorted(resources(types.LISTENER)):
        listener = listeners.dynamic_listeners.add(name=r.name)
        listener.active_state.version_info = r.version
        listener.active_state.listener.Pack(_parse(listener_pb2.Listener, r))
    routes = config_dump_shared_pb2.RoutesConfigDump()
    for r in _sorted(resources(types.ROUTE)):
        entry = routes.dynamic_route_configs.add(version_info=r.version)
        entry.route_config.Pack(_parse(route_pb2.RouteConfiguration, r))
    secrets = config_dump_pb2.SecretsConfigDump()
    for r in _sorted(resources(types.SECRET)):
        secret = _parse(secret_pb2.Secret, r)
        if secret.HasField("tls_certificate"):
            secret.tls_certificate.private_key.inline_bytes = REDACTED
        entry = secrets.dynamic_active_secrets.add(name=r.name, version_info=r.version)
        entry.secret.Pack(secret)
    dump = config_dump_pb2.ConfigDump()
    for part in (clusters, endpoints, listeners, routes, secrets):
        dump.configs.add().Pack(part)
    document: dict[str, Any] = json.loads(json_format.MessageToJson(dump))
    return document


def config_dump_routes(store: Store, source: ConfigSource) -> list[web.RouteDef]:
    async def dataplane_xds(request: web.Request) -> web.StreamResponse:
        require_admin(request, "a proxy's config dump")
        mesh, name = request.match_info["mesh"], request.match_info["name"]
        try:
            await store.get(ResourceKey("Dataplane", mesh, name))
        except NotFoundError:
            raise not_found("Could not retrieve a resource") from None
        async with source.watch_proxy(f"{mesh}.{name}") as watch:
            document = config_dump(lambda type_url: list(watch.resources(type_url).values()))
        return web.Response(
            text=json.dumps(document, indent=2) + "\n", content_type="application/json"
        )

    return [web.get("/meshes/{mesh}/dataplanes/{name}/xds", dataplane_xds)]
