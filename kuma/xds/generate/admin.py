"""Kuma's admin generator (``pkg/xds/generator/admin_proxy_generator.go``).

Envoy's admin API stays on loopback (the bootstrap binds it to 127.0.0.1:adminPort). The
control plane adds:

* the STATIC cluster ``kuma:envoy:admin`` to 127.0.0.1:adminPort;
* the listener ``kuma:envoy:admin`` on ``networking.address``:adminPort, which exposes only
  ``GET /ready`` (rewritten to the admin API's ``/ready``), so health checkers off the host can
  see whether the proxy is ready;
* when the proxy's kuma-dp reports readiness itself (its node metadata carries
  ``dataplane.readinessReporter.port``): the STATIC cluster ``kuma:readiness`` to
  127.0.0.1:<that port>, and ``/ready`` goes there instead, so the answer turns to
  "TERMINATING" as soon as kuma-dp starts draining, before Envoy stops (Kuma 2.7.7+).

Kuma adds a second, mTLS-only filter chain exposing the whole admin API to the control plane
with its own certificate; this project has no such certificate, so that chain is left out and
nothing else of the admin API leaves loopback.

The listener is left out when ``networking.address`` is 127.0.0.1 (it would collide with
Envoy's own admin socket, as Kuma notes), unspecified, or not an IP literal.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from kuma.resources.model import Dataplane

from ._pb import INTERNAL_ADDRESSES, ROUTER, Message, add_hcm, set_socket_address
from .clusters import static_cluster
from .names import (
    DP_READINESS_CLUSTER,
    ENVOY_ADMIN_CLUSTER,
    ENVOY_ADMIN_LISTENER,
    sanitize_metric,
)

#: Where Envoy's admin API listens (Kuma's default ``bootstrapServer.params.adminAddress``).
ADMIN_ADDRESS = "127.0.0.1"
#: The admin paths exposed on the proxy's address, each rewritten to itself.
EXPOSED_PATHS = ("/ready",)


def admin_port(dataplane: Dataplane, default_admin_port: int) -> int:
    """``networking.admin.port``, else the control plane's default (0: no admin API)."""
    networking = dataplane.networking
    if networking is not None and networking.admin is not None and networking.admin.port:
        return networking.admin.port
    return default_admin_port


def admin_cluster(port: int) -> cluster_pb2.Cluster:
    return static_cluster(ENVOY_ADMIN_CLUSTER, ADMIN_ADDRESS, port)


def _exposable(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not ip.is_unspecified and address != ADMIN_ADDRESS


def readiness_cluster(port: int) -> cluster_pb2.Cluster:
    """``kuma:readiness``: kuma-dp's readiness reporter on loopback."""
    return static_cluster(DP_READINESS_CLUSTER, ADMIN_ADDRESS, port)


@functools.lru_cache(maxsize=256)
def _static_endpoints_chain(
    name: str, routes: tuple[tuple[str, str, str], ...]
) -> listener_components_pb2.FilterChain:
    # Every proxy gets the same chain (only the listener's address differs): built and packed
    # once, copied into each listener. Callers never change the cached message.
    config = hcm_pb2.HttpConnectionManager(stat_prefix=sanitize_metric(name))
    config.http_filters.append(ROUTER)
    config.internal_address_config.CopyFrom(INTERNAL_ADDRESSES)
    config.route_config.validate_clusters.value = False
    host = config.route_config.virtual_hosts.add(name=name, domains=["*"])
    for prefix, cluster, rewrite in routes:
        route = host.routes.add()
        route.match.prefix = prefix
        route.route.cluster = cluster
        route.route.prefix_rewrite = rewrite
    chain = listener_components_pb2.FilterChain()
    add_hcm(chain, config)
    return chain


def static_endpoints_listener(
    name: str, address: str, port: int, routes: Iterable[tuple[str, str, str]]
) -> listener_pb2.Listener:
    """Kuma's ``StaticEndpoints`` listener ``name`` on ``address:port``: each route is
    (path prefix, cluster, prefix rewrite)."""
    listener = listener_pb2.Listener(name=name, traffic_direction=base_pb2.INBOUND)
    set_socket_address(listener.address, address, port)
    listener.enable_reuse_port.value = False
    listener.filter_chains.add().CopyFrom(_static_endpoints_chain(name, tuple(routes)))
    return listener


def admin_listener(
    address: str, port: int, ready_cluster: str = ENVOY_ADMIN_CLUSTER
) -> listener_pb2.Listener:
    """The ``kuma:envoy:admin`` listener on ``address:port`` exposing ``EXPOSED_PATHS``, each
    sent to ``ready_cluster`` (Envoy's admin API, or kuma-dp's readiness reporter)."""
    routes = ((path, ready_cluster, path) for path in EXPOSED_PATHS)
    return static_endpoints_listener(ENVOY_ADMIN_LISTENER, address, port, routes)


def admin_resources(
    dataplane: Dataplane, default_admin_port: int, readiness_port: int = 0
) -> list[Message]:
    """The admin cluster, the readiness cluster when ``readiness_port`` (kuma-dp's reporter,
    0: none) is set, and, where it is safe, the admin listener (see the module doc)."""
    port = admin_port(dataplane, default_admin_port)
    if port == 0:
        return []
    resources: list[Message] = [admin_cluster(port)]
    ready_cluster = ENVOY_ADMIN_CLUSTER
    if readiness_port:
        resources.append(readiness_cluster(readiness_port))
        ready_cluster = DP_READINESS_CLUSTER
    networking = dataplane.networking
    if networking is not None and _exposable(networking.address):
        resources.append(admin_listener(networking.address, port, ready_cluster))
    return resources
