"""Listeners, after Kuma v2.7's inbound, outbound and transparent-proxy generators.

Shapes follow Kuma's generators for a mesh without mTLS and without policies (the reference is
``pkg/xds/generator/testdata/profile-source/*.golden.yaml`` minus TLS and RBAC):

* inbound: ``inbound:<address>:<port>``, one filter chain: ``tcp_proxy`` to
  ``localhost:<servicePort>`` (tcp, kafka, untagged) or an HTTP connection manager with the
  inline route config ``inbound:<service>`` (http, http2; grpc adds ``grpc_stats``), timeouts
  from Kuma's ``DefaultInboundTimeout`` (idle 7200s, stream idle 3600s, no request timeout).
  Kafka gets no ``kafka_broker`` filter: it is an Envoy contrib extension, absent from
  standard Envoy builds.
* outbound: ``outbound:<address>:<port>``, ``tcp_proxy`` with stat prefix = service or an
  HTTP connection manager with the inline route config ``outbound:<service>`` routing every
  request to the service's cluster, shaped as Kuma 2.7's MeshHTTPRoute / MeshTCPRoute
  plugins build them in a mesh without legacy TrafficRoutes (``normalize_path``, the catch-all
  route named by its matches' hash, no idle timeouts of their own: Envoy's defaults until
  MeshTimeout sets them, see ``kuma/policies``). Kuma's ``x-kuma-tags`` request header (the
  caller's tags) is added only when the proxy's mesh has a policy that consumes it
  (``kuma.policies.caller_tags``: a MeshFaultInjection naming clients): elsewhere one outbound
  listener fits every proxy that uses it.
* transparent proxying: every inbound and outbound listener gets ``bind_to_port: false``; the
  redirect listeners on 0.0.0.0 (``use_original_dst``, for which Envoy adds the
  ``original_dst`` listener filter itself) hand each connection to the listener of its
  original destination, or to the passthrough TCP proxy when there is none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from kuma.resources.model import SERVICE_TAG, Dataplane, Inbound

from ._pb import (
    GRPC_STATS,
    HCM_FILTER,
    INTERNAL_ADDRESSES,
    ROUTER,
    TAGS_METADATA_KEY,
    TCP_PROXY_FILTER,
    add_hcm,
    add_tcp_proxy,
    pack,
    set_socket_address,
    set_tags,
    tcp_proxy,
)
from .dataplane import inbound_protocol, is_transparent
from .destination import Destination
from .names import (
    INBOUND_PASSTHROUGH_IPV4,
    INBOUND_PASSTHROUGH_IPV6,
    OUTBOUND_PASSTHROUGH_IPV4,
    OUTBOUND_PASSTHROUGH_IPV6,
    TAGS_HEADER,
    inbound_listener_name,
    inbound_route_name,
    local_cluster_name,
    outbound_listener_name,
    outbound_route_name,
    sanitize_metric,
)
from .protocol import GRPC, HTTP_PROTOCOLS
from .rbac import PermissionRule, apply_rbac
from .tls import secure_inbound

INBOUND_IDLE_TIMEOUT = 7200
INBOUND_STREAM_IDLE_TIMEOUT = 3600

_INBOUND = base_pb2.INBOUND
_OUTBOUND = base_pb2.OUTBOUND
_HCM = hcm_pb2.HttpConnectionManager


class InboundMtls(NamedTuple):
    """How an inbound is secured: the mesh, its backend's mode (STRICT or PERMISSIVE) and the
    permission rules that apply to the inbound (``rbac.DENY_ALL`` when none does)."""

    mesh: str
    mode: str
    permissions: Sequence[PermissionRule]


def _listener(
    name: str,
    address: str,
    port: int,
    direction: int,
    *,
    bind_to_port: bool = True,
    tags: Mapping[str, str] | None = None,
) -> tuple[listener_pb2.Listener, listener_components_pb2.FilterChain]:
    """A listener and its (single, still empty) filter chain."""
    listener = listener_pb2.Listener(name=name, traffic_direction=direction)
    set_socket_address(listener.address, address, port)
    if direction == _INBOUND:
        listener.enable_reuse_port.value = False
    if not bind_to_port:
        listener.bind_to_port.value = False
    if tags:
        set_tags(listener.metadata, TAGS_METADATA_KEY, sorted(tags.items()))
    return listener, listener.filter_chains.add()


def _set_route_config(
    config: route_pb2.RouteConfiguration, name: str, virtual_host: str, cluster: str
) -> None:
    config.name = name
    config.validate_clusters.value = False
    host = config.virtual_hosts.add(name=virtual_host, domains=["*"])
    route = host.routes.add()
    route.match.prefix = "/"
    action = route.route
    action.cluster = cluster
    action.timeout.SetInParent()  # 0s: no request timeout (Kuma, without a Timeout policy)


def _hcm(stat_prefix: str, protocol: str) -> hcm_pb2.HttpConnectionManager:
    config = _HCM(stat_prefix=stat_prefix)
    filters = config.http_filters
    if protocol == GRPC:
        filters.append(GRPC_STATS)
    filters.append(ROUTER)
    config.internal_address_config.CopyFrom(INTERNAL_ADDRESSES)
    return config


def _add_inbound_hcm(
    chain: listener_components_pb2.FilterChain, service: str, cluster: str, protocol: str
) -> None:
    config = _hcm(sanitize_metric(cluster), protocol)
    route_config = config.route_config
    _set_route_config(route_config, inbound_route_name(service), service, cluster)
    route_config.request_headers_to_remove.append(TAGS_HEADER)
    config.forward_client_cert_details = _HCM.SANITIZE_SET
    config.set_current_client_cert_details.uri = True
    config.common_http_protocol_options.idle_timeout.seconds = INBOUND_IDLE_TIMEOUT
    config.stream_idle_timeout.seconds = INBOUND_STREAM_IDLE_TIMEOUT
    add_hcm(chain, config)


#: The name of the catch-all route (``prefix: /``): Kuma names MeshHTTPRoute routes by the
#: base64 SHA-256 of their matches' JSON, ``[{"path":{"value":"/","type":"PathPrefix"}}]``.
DEFAULT_ROUTE_NAME = "9Zuf5Tg79OuZcQITwBbQykxAk2u4fRKrwYn3//AL4Yo="


def _outbound_hcm(
    service: str, cluster: str, protocol: str, caller_tags: str
) -> hcm_pb2.HttpConnectionManager:
    # As Kuma 2.7's MeshHTTPRoute plugin builds every HTTP outbound of a mesh without legacy
    # TrafficRoutes: paths normalized, the catch-all route named by its matches' hash, and no
    # connection or stream idle timeouts of its own (Envoy's defaults; MeshTimeout sets them).
    config = _hcm(sanitize_metric(service), protocol)
    config.normalize_path.value = True
    _set_route_config(config.route_config, outbound_route_name(service), service, cluster)
    config.route_config.virtual_hosts[0].routes[0].name = DEFAULT_ROUTE_NAME
    if caller_tags:  # Kuma's TagsHeaderConfigurer: nothing for a proxy without tags
        added = config.route_config.request_headers_to_add.add()
        added.header.key = TAGS_HEADER
        added.header.value = caller_tags
    return config


def inbound_listener(
    dataplane: Dataplane, inbound: Inbound, mtls: InboundMtls | None = None
) -> listener_pb2.Listener:
    """The listener of one inbound, at its effective address and ``port``; with ``mtls``,
    secured as the mesh's mode says and guarded by its permissions (``tls``, ``rbac``)."""
    networking = dataplane.networking
    assert networking is not None
    address = inbound.effective_address(networking)
    cluster = local_cluster_name(inbound.effective_service_port)
    protocol = inbound_protocol(inbound)
    listener, chain = _listener(
        inbound_listener_name(address, inbound.port),
        address,
        inbound.port,
        _INBOUND,
        bind_to_port=not is_transparent(dataplane),
        tags=inbound.tags,
    )
    if protocol in HTTP_PROTOCOLS:
        _add_inbound_hcm(chain, inbound.tags.get(SERVICE_TAG, ""), cluster, protocol)
    else:
        add_tcp_proxy(chain, sanitize_metric(cluster), cluster, INBOUND_IDLE_TIMEOUT)
    if mtls is not None:
        for secured in secure_inbound(listener, mtls.mesh, mtls.mode):
            apply_rbac(secured, listener.name, mtls.mesh, mtls.permissions)
    return listener


def outbound_listener(
    address: str,
    port: int,
    destination: Destination | str,
    protocol: str,
    *,
    bind_to_port: bool = True,
    caller_tags: str = "",
) -> listener_pb2.Listener:
    """The listener of an outbound to ``destination`` (a service name: all of it);
    ``protocol`` is the service's protocol. Stats and route names use the service, the
    traffic goes to the destination's cluster, the listener's metadata holds its tags.
    ``caller_tags``: the ``x-kuma-tags`` value HTTP requests get (``""``: no header)."""
    if isinstance(destination, str):
        destination = Destination(destination)
    listener, chain = outbound_listener_shell(address, port, destination, bind_to_port)
    name, config = outbound_filter(destination, protocol, caller_tags)
    chain.filters.add(name=name).typed_config.CopyFrom(pack(config))
    return listener


def outbound_listener_shell(
    address: str, port: int, destination: Destination, bind_to_port: bool = True
) -> tuple[listener_pb2.Listener, listener_components_pb2.FilterChain]:
    """An outbound listener without its network filter (:func:`outbound_filter`), the only
    part of it that depends on the address and port: so one filter can serve many."""
    return _listener(
        outbound_listener_name(address, port),
        address,
        port,
        _OUTBOUND,
        bind_to_port=bind_to_port,
        tags=destination.tags,
    )


def outbound_filter(
    destination: Destination, protocol: str, caller_tags: str = ""
) -> tuple[str, hcm_pb2.HttpConnectionManager | tcp_proxy_pb2.TcpProxy]:
    """The network filter (name, config not packed) of an outbound listener to
    ``destination``, as :func:`outbound_listener` describes it."""
    service = destination.service
    cluster = destination.cluster_name
    if protocol in HTTP_PROTOCOLS:
        return HCM_FILTER, _outbound_hcm(service, cluster, protocol, caller_tags)
    # Kuma's MeshTCPRoute plugin: no idle timeout of its own (Envoy's 1h; MeshTimeout sets it).
    return TCP_PROXY_FILTER, tcp_proxy(sanitize_metric(service), cluster, None)


def _redirect_listener(name: str, port: int, direction: int, ipv6: bool) -> listener_pb2.Listener:
    listener, chain = _listener(name, "::" if ipv6 else "0.0.0.0", port, direction)
    listener.use_original_dst.value = True
    add_tcp_proxy(chain, sanitize_metric(name), name, None)
    return listener


def outbound_redirect_listener(port: int, ipv6: bool = False) -> listener_pb2.Listener:
    """``outbound:passthrough:ipv4`` on 0.0.0.0:``redirectPortOutbound``."""
    name = OUTBOUND_PASSTHROUGH_IPV6 if ipv6 else OUTBOUND_PASSTHROUGH_IPV4
    return _redirect_listener(name, port, _OUTBOUND, ipv6)


def inbound_redirect_listener(port: int, ipv6: bool = False) -> listener_pb2.Listener:
    """``inbound:passthrough:ipv4`` on 0.0.0.0:``redirectPortInbound``."""
    name = INBOUND_PASSTHROUGH_IPV6 if ipv6 else INBOUND_PASSTHROUGH_IPV4
    return _redirect_listener(name, port, _INBOUND, ipv6)
