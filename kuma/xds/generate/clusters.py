"""Clusters, after Kuma v2.7's cluster configurers (``pkg/xds/envoy/clusters/v3``).

Service (outbound) clusters carry no timeouts of their own, as Kuma 2.7's MeshHTTPRoute /
MeshTCPRoute plugins build them (Envoy's defaults until MeshTimeout sets them, see
``kuma/policies``); inbound (application) clusters use Kuma's ``DefaultInboundTimeout``:
connect 10s, HTTP idle 7200s.
"""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as upstream_http_pb2

from kuma.resources.model import Dataplane, Inbound

from ._pb import ADS_CONFIG_SOURCE, HTTP_PROTOCOL_OPTIONS_KEY, pack, set_socket_address
from .dataplane import inbound_protocol, is_ipv6, is_loopback_workload, is_transparent
from .destination import Destination
from .names import (
    INBOUND_PASSTHROUGH_IPV4,
    INBOUND_PASSTHROUGH_IPV6,
    INBOUND_PASSTHROUGH_SOURCE_IPV4,
    INBOUND_PASSTHROUGH_SOURCE_IPV6,
    OUTBOUND_PASSTHROUGH_IPV4,
    OUTBOUND_PASSTHROUGH_IPV6,
    local_cluster_name,
    sanitize_metric,
    service_cluster_name,
)
from .protocol import GRPC, HTTP, HTTP2, KAFKA, TCP
from .tls import upstream_transport_socket

DEFAULT_CONNECT_TIMEOUT = 5
INBOUND_CONNECT_TIMEOUT = 10
INBOUND_IDLE_TIMEOUT = 7200


def _named(name: str) -> cluster_pb2.Cluster:
    """A cluster named ``name`` (:func:`_set_name`)."""
    cluster = cluster_pb2.Cluster()
    _set_name(cluster, name)
    return cluster


def _set_name(cluster: cluster_pb2.Cluster, name: str) -> None:
    """Name the cluster, with Kuma's ``altStatName`` when the name holds characters stats
    dislike."""
    cluster.name = name
    alt = sanitize_metric(name)
    if alt != name:
        cluster.alt_stat_name = alt


def _http_options(protocol: str, idle_timeout: int | None, *, force_http2: bool) -> Any | None:
    """Upstream HTTP options, packed: HTTP/2 (HTTP/1.1 for an ``http`` application) and, for
    HTTP protocols, the idle timeout of upstream connections (None: Envoy's default). None
    when there are none."""
    options = upstream_http_pb2.HttpProtocolOptions()
    http = protocol in (HTTP, HTTP2, GRPC)
    if http and idle_timeout is not None:
        options.common_http_protocol_options.idle_timeout.seconds = idle_timeout
    if force_http2 or protocol in (HTTP2, GRPC):
        options.explicit_http_config.http2_protocol_options.SetInParent()
    elif protocol == HTTP:
        options.explicit_http_config.http_protocol_options.SetInParent()
    else:
        return None
    return pack(options)


_PROTOCOLS = (TCP, HTTP, HTTP2, GRPC, KAFKA)
# The options depend on the protocol only: pack them once.
_SERVICE_OPTIONS = {p: _http_options(p, None, force_http2=True) for p in _PROTOCOLS}
_LOCAL_OPTIONS = {p: _http_options(p, INBOUND_IDLE_TIMEOUT, force_http2=False) for p in _PROTOCOLS}


def service_cluster(
    destination: Destination | str,
    protocol: str,
    tls_mesh: str | None = None,
    upstream: str | None = None,
) -> cluster_pb2.Cluster:
    """The EDS cluster of a destination (a service name: all of it; endpoints over ADS, in
    the ClusterLoadAssignment of the same name). A subset's cluster differs from its
    service's by name and, with mTLS, by the SNI it sends (the subset's tags).

    Like Kuma, every mesh service cluster speaks HTTP/2 to the other sidecar whatever the
    protocol: the peer's inbound HTTP connection manager accepts HTTP/1.1 and HTTP/2 alike,
    and TCP proxying ignores the option. ``protocol`` adds the HTTP idle timeout.
    With ``tls_mesh`` the cluster originates that mesh's mTLS (``tls.upstream_transport_socket``;
    ``upstream``: the service whose identity answers, when not the destination's).
    """
    cluster = service_cluster_body(protocol)
    set_destination(cluster, destination, tls_mesh, upstream)
    return cluster


def service_cluster_body(protocol: str) -> cluster_pb2.Cluster:
    """What a service cluster holds whatever its destination (:func:`service_cluster` without
    :func:`set_destination`): the same for every service of a protocol."""
    cluster = cluster_pb2.Cluster(type=cluster_pb2.Cluster.EDS)
    # Kuma's MeshHTTPRoute/MeshTCPRoute plugins build service clusters without timeouts of
    # their own (Envoy's defaults: connect 5s, idle 1h); MeshTimeout sets them.
    cluster.eds_cluster_config.eds_config.CopyFrom(ADS_CONFIG_SOURCE)
    options = _SERVICE_OPTIONS.get(protocol) or _SERVICE_OPTIONS[TCP]
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].CopyFrom(options)
    return cluster


def set_destination(
    cluster: cluster_pb2.Cluster,
    destination: Destination | str,
    tls_mesh: str | None = None,
    upstream: str | None = None,
) -> None:
    """The fields of a service cluster that name its destination: its name (and stat name)
    and, with ``tls_mesh``, the mTLS it originates (the SNI and identity it expects)."""
    name = destination if isinstance(destination, str) else destination.cluster_name
    _set_name(cluster, service_cluster_name(name))
    if tls_mesh is not None:
        if isinstance(destination, str):
            destination = Destination(destination)
        socket = upstream_transport_socket(
            tls_mesh, destination.service, destination.subset, upstream
        )
        cluster.transport_socket.CopyFrom(socket)


def static_cluster(
    name: str, address: str, port: int, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
) -> cluster_pb2.Cluster:
    """A STATIC cluster of one endpoint (Kuma's ``ProvidedEndpointCluster``)."""
    cluster = _named(name)
    cluster.type = cluster_pb2.Cluster.STATIC
    cluster.connect_timeout.seconds = connect_timeout
    assignment = cluster.load_assignment
    assignment.cluster_name = name
    endpoint = assignment.endpoints.add().lb_endpoints.add().endpoint
    set_socket_address(endpoint.address, address, port)
    return cluster


def pipe_cluster(
    name: str, path: str, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
) -> cluster_pb2.Cluster:
    """A STATIC cluster of one unix-socket endpoint (Kuma's ``ProvidedEndpointCluster`` with a
    ``UnixDomainPath``)."""
    cluster = _named(name)
    cluster.type = cluster_pb2.Cluster.STATIC
    cluster.connect_timeout.seconds = connect_timeout
    assignment = cluster.load_assignment
    assignment.cluster_name = name
    assignment.endpoints.add().lb_endpoints.add().endpoint.address.pipe.path = path
    return cluster


def local_cluster(
    name: str, address: str, port: int, protocol: str, *, bind_source: str | None = None
) -> cluster_pb2.Cluster:
    """The STATIC cluster of an inbound's application (see ``inbound_cluster``)."""
    cluster = static_cluster(name, address, port, INBOUND_CONNECT_TIMEOUT)
    options = _LOCAL_OPTIONS.get(protocol)
    if options is not None:
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].CopyFrom(options)
    if bind_source is not None:
        _bind(cluster, bind_source)
    return cluster


def inbound_cluster(dataplane: Dataplane, inbound: Inbound) -> cluster_pb2.Cluster:
    """``localhost:<servicePort>``: STATIC, at the inbound's serviceAddress:servicePort, speaking
    the inbound's protocol (HTTP/1.1 for http, HTTP/2 for http2 and grpc). With transparent
    proxying, connections to a non-loopback application leave from 127.0.0.6 (``::6``) so
    iptables does not redirect them back to Envoy."""
    networking = dataplane.networking
    assert networking is not None
    address = inbound.effective_service_address(networking)
    bind_source = None
    if is_transparent(dataplane) and not is_loopback_workload(address):
        ipv6 = is_ipv6(address)
        bind_source = INBOUND_PASSTHROUGH_SOURCE_IPV6 if ipv6 else INBOUND_PASSTHROUGH_SOURCE_IPV4
    port = inbound.effective_service_port
    return local_cluster(
        local_cluster_name(port), address, port, inbound_protocol(inbound), bind_source=bind_source
    )


def _bind(cluster: cluster_pb2.Cluster, source: str) -> None:
    source_address = cluster.upstream_bind_config.source_address
    source_address.address = source
    source_address.port_value = 0


def passthrough_cluster(name: str, bind_source: str | None = None) -> cluster_pb2.Cluster:
    """An ORIGINAL_DST cluster: connections go where they were headed before redirection."""
    cluster = _named(name)
    cluster.type = cluster_pb2.Cluster.ORIGINAL_DST
    cluster.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    cluster.connect_timeout.seconds = DEFAULT_CONNECT_TIMEOUT
    if bind_source is not None:
        _bind(cluster, bind_source)
    return cluster


def outbound_passthrough_cluster(ipv6: bool = False) -> cluster_pb2.Cluster:
    """``outbound:passthrough:ipv4``: traffic to destinations outside the mesh (only when the
    Mesh allows passthrough, the default)."""
    return passthrough_cluster(OUTBOUND_PASSTHROUGH_IPV6 if ipv6 else OUTBOUND_PASSTHROUGH_IPV4)


def inbound_passthrough_cluster(ipv6: bool = False) -> cluster_pb2.Cluster:
    """``inbound:passthrough:ipv4``: inbound traffic to ports with no inbound listener, sent on
    from 127.0.0.6 so iptables does not redirect it again."""
    if ipv6:
        return passthrough_cluster(INBOUND_PASSTHROUGH_IPV6, INBOUND_PASSTHROUGH_SOURCE_IPV6)
    return passthrough_cluster(INBOUND_PASSTHROUGH_IPV4, INBOUND_PASSTHROUGH_SOURCE_IPV4)
