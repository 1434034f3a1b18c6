"""A builtin gateway's Envoy resources as Kuma 2.7 builds them for HTTP listeners (compared
with meshhttproute's ``gateway.*.golden.yaml``; runtime/gateway ``listener_generator.go``,
``filter_chain_generator.go``, ``route_configuration_generator.go``, ``route_table_generator.go``,
``cluster_generator.go``).

* Listener ``<gateway>:HTTP:<port>`` on the Dataplane's address: reuse port, 32 KiB
  connection buffer, TLS inspector, an HTTP connection manager with stat prefix the gateway
  Dataplane's service (sanitized as a metric),
  server name ``Kuma Gateway``, Kuma's gateway defaults (idle 5 min, stream idle 5 s, request
  headers 500 ms), path normalization, underscores in headers rejected, the local rate-limit,
  gzip and router filters, and RDS route configuration ``<listener>:*``.
* Route configuration: ``x-kuma-tags`` removed from requests, port ignored in host matching,
  one virtual host per hostname; a virtual host without routes answers 404 with Kuma's text.
* Route: weighted clusters (the gateway's tags as ``x-kuma-tags``), a 5 s idle timeout,
  500 when a cluster is missing.
* TCP listener ``<gateway>:TCP:<port>``: the same base, a ``tcp_proxy`` (stat prefix the
  service) to the backends of the MeshTCPRoutes targeting the MeshGateway.
* Cluster ``<service>-<hash of its tags and the listener's tags>``: EDS, connect 5 s, 32 KiB
  buffer, HTTP/1.1 (HTTP/2 for http2/grpc services) with no upstream idle timeout; the mesh's
  mTLS like a sidecar's.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as route_pb2
from envoy.config.route.v3 import route_pb2 as route_config_pb2
from envoy.extensions.compression.gzip.compressor.v3 import gzip_pb2
from envoy.extensions.filters.http.compressor.v3 import compressor_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from kuma.policies.meshtimeout import (
    DEFAULT_GATEWAY_IDLE_TIMEOUT,
    DEFAULT_GATEWAY_REQUEST_HEADERS_TIMEOUT,
    DEFAULT_GATEWAY_STREAM_IDLE_TIMEOUT,
)
from kuma.policies.plugin import set_duration
from kuma.xds.generate._pb import (
    ADS_CONFIG_SOURCE,
    HCM_FILTER,
    HTTP_PROTOCOL_OPTIONS_KEY,
    INTERNAL_ADDRESSES,
    ROUTER,
    TCP_PROXY_FILTER,
    pack,
    set_socket_address,
)
from kuma.xds.generate.clusters import _http_options, service_cluster
from kuma.xds.generate.destination import Destination
from kuma.xds.generate.names import TAGS_HEADER, sanitize_metric

from .route_action import add_match, apply_filters
from .routes import Entry, VirtualHost

SERVER_NAME = "Kuma Gateway"
#: Kuma's ``DefaultConnectionBuffer``: limits buffering for edge connections.
CONNECTION_BUFFER = 32 * 1024
CONNECT_TIMEOUT = 5
EMPTY_GATEWAY = "This is a Kuma MeshGateway. No routes match this MeshGateway!\n"
_NOT_FOUND = 404
#: Kuma sets HSTS (one year) on every HTTPS virtual host.
_HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")

_TLS_INSPECTOR = listener_components_pb2.ListenerFilter(
    name="envoy.filters.listener.tls_inspector",
    typed_config=pack(tls_inspector_pb2.TlsInspector()),
)
_RATE_LIMIT = hcm_pb2.HttpFilter(
    name="envoy.filters.http.local_ratelimit",
    typed_config=pack(local_rate_limit_pb2.LocalRateLimit(stat_prefix="rate_limit")),
)
_GZIP = hcm_pb2.HttpFilter(
    name="gzip-compress",
    typed_config=pack(
        compressor_pb2.Compressor(
            compressor_library={"name": "gzip", "typed_config": pack(gzip_pb2.Gzip())},
            response_direction_config={"disable_on_etag_header": True},
        )
    ),
)


def listener_name(gateway: str, protocol: str, port: int) -> str:
    """Kuma's ``GetGatewayListenerName``."""
    return f"{gateway}:{protocol}:{port}"


def route_config_name(listener: str) -> str:
    # An HTTP listener's hostnames share one route configuration, named for all hosts.
    return f"{listener}:*"


def base_listener(name: str, address: str, port: int) -> listener_pb2.Listener:
    """Kuma's ``GenerateListener``: every gateway listener's base."""
    listener = listener_pb2.Listener(name=name, traffic_direction=base_pb2.INBOUND)
    set_socket_address(listener.address, address, port)
    listener.enable_reuse_port.value = True
    listener.per_connection_buffer_limit_bytes.value = CONNECTION_BUFFER
    listener.listener_filters.append(_TLS_INSPECTOR)
    return listener


def tcp_listener(
    gateway: str, service: str, address: str, port: int, clusters: Sequence[tuple[str, int]]
) -> listener_pb2.Listener:
    """A TCP listener proxying every connection to its routes' backends (Kuma's
    ``TcpProxyDeprecated``: one cluster, or weighted clusters sorted by name)."""
    listener = base_listener(listener_name(gateway, "TCP", port), address, port)
    proxy = tcp_proxy(service, clusters)
    listener.filter_chains.add().filters.add(name=TCP_PROXY_FILTER, typed_config=pack(proxy))
    return listener


def tcp_proxy(service: str, clusters: Sequence[tuple[str, int]]) -> tcp_proxy_pb2.TcpProxy:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=sanitize_metric(service))
    if len(clusters) == 1:
        proxy.cluster = clusters[0][0]
    else:
        for cluster, weight in sorted(clusters):
            proxy.weighted_clusters.clusters.add(name=cluster, weight=weight)
    return proxy


def http_listener(gateway: str, service: str, address: str, port: int) -> listener_pb2.Listener:
    """``service``: the gateway Dataplane's ``kuma.io/service`` (Kuma's identifying service)."""
    name = listener_name(gateway, "HTTP", port)
    listener = base_listener(name, address, port)
    hcm = connection_manager(service, route_config_name(name))
    listener.filter_chains.add().filters.add(name=HCM_FILTER, typed_config=pack(hcm))
    return listener


def connection_manager(service: str, route_config: str) -> hcm_pb2.HttpConnectionManager:
    """Kuma's ``newHTTPFilterChain``: the HTTP connection manager of every HTTP(S) chain."""
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=sanitize_metric(service),
        server_name=SERVER_NAME,
        merge_slashes=True,
        path_with_escaped_slashes_action=hcm_pb2.HttpConnectionManager.UNESCAPE_AND_REDIRECT,
    )
    hcm.normalize_path.value = True
    hcm.use_remote_address.value = True
    hcm.http_filters.extend([_RATE_LIMIT, _GZIP, ROUTER])
    hcm.internal_address_config.CopyFrom(INTERNAL_ADDRESSES)
    common = hcm.common_http_protocol_options
    common.headers_with_underscores_action = protocol_pb2.HttpProtocolOptions.REJECT_REQUEST
    set_duration(common.idle_timeout, DEFAULT_GATEWAY_IDLE_TIMEOUT)
    http2 = hcm.http2_protocol_options
    http2.allow_connect = True
    http2.initial_connection_window_size.value = 1024 * 1024
    http2.initial_stream_window_size.value = 64 * 1024
    http2.max_concurrent_streams.value = 100
    set_duration(hcm.request_headers_timeout, DEFAULT_GATEWAY_REQUEST_HEADERS_TIMEOUT)
    set_duration(hcm.stream_idle_timeout, DEFAULT_GATEWAY_STREAM_IDLE_TIMEOUT)
    hcm.rds.route_config_name = route_config
    hcm.rds.config_source.CopyFrom(ADS_CONFIG_SOURCE)
    return hcm


ClusterNames = dict[tuple[str, tuple[tuple[str, str], ...]], str]


def route_configuration(
    name: str,
    hosts: Sequence[VirtualHost],
    caller_tags: str,
    clusters: ClusterNames,
    port: int,
    *,
    https: bool = False,
) -> route_config_pb2.RouteConfiguration:
    """``https``: an HTTPS listener's, whose virtual hosts require TLS and set HSTS."""
    config = route_config_pb2.RouteConfiguration(name=name, ignore_port_in_host_matching=True)
    config.validate_clusters.value = False
    config.request_headers_to_remove.append(TAGS_HEADER)
    for host in hosts:
        virtual_host = config.virtual_hosts.add(name=host.hostname, domains=[host.hostname])
        if https:
            virtual_host.require_tls = route_pb2.VirtualHost.ALL
            header = virtual_host.response_headers_to_add.add()
            header.append_action = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
            header.header.key, header.header.value = _HSTS
        if not host.entries:
            route = virtual_host.routes.add()
            route.match.prefix = "/"
            route.direct_response.status = _NOT_FOUND
            route.direct_response.body.inline_string = EMPTY_GATEWAY
            continue
        for entry in host.entries:
            virtual_host.routes.append(_route(entry, caller_tags, clusters, port))
    return config


def _route(entry: Entry, caller_tags: str, clusters: ClusterNames, port: int) -> route_pb2.Route:
    route = route_pb2.Route(name=entry.name)
    match = route.match
    if entry.exact:
        match.path = entry.exact
    elif entry.prefix:
        match.prefix = entry.prefix
    else:
        match.safe_regex.regex = entry.regex
    add_match(match, entry.match)
    action = route.route
    action.cluster_not_found_response_code = route_pb2.RouteAction.INTERNAL_SERVER_ERROR
    set_duration(action.idle_timeout, DEFAULT_GATEWAY_STREAM_IDLE_TIMEOUT)
    for backend, weight in entry.backends:
        cluster = action.weighted_clusters.clusters.add(name=clusters[backend])
        cluster.weight.value = weight
        if caller_tags:
            header = cluster.request_headers_to_add.add().header
            header.key, header.value = TAGS_HEADER, caller_tags
    if apply_filters(route, entry.filters, port):
        return route  # a redirect replaced the forwarding action
    if not entry.backends:  # nothing to forward to
        route.ClearField("route")
        route.direct_response.status = _NOT_FOUND
    return route


def gateway_cluster(
    destination: Destination, protocol: str, tls_mesh: str | None
) -> cluster_pb2.Cluster:
    cluster = service_cluster(destination, protocol, tls_mesh)
    cluster.connect_timeout.seconds = CONNECT_TIMEOUT
    cluster.per_connection_buffer_limit_bytes.value = CONNECTION_BUFFER
    del cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY]
    options = _http_options(protocol, 0, force_http2=False)
    if options is not None:
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].CopyFrom(options)
    return cluster


__all__ = [
    "EMPTY_GATEWAY",
    "base_listener",
    "connection_manager",
    "gateway_cluster",
    "http_listener",
    "listener_name",
    "route_config_name",
    "route_configuration",
    "tcp_listener",
    "tcp_proxy",
]
