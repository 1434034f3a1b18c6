"""Small protobuf helpers shared by the builders: packing, addresses, constant filters."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2 as grpc_stats_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

# google.protobuf ships no type stubs (types-protobuf is optional): ignore, and tolerate either.
from google.protobuf import (  # type: ignore[import-untyped, unused-ignore]
    any_pb2,
    wrappers_pb2,
)

# Re-exported for the other modules (typed as Any when the stubs are missing).
from google.protobuf.message import (  # type: ignore[import-untyped, unused-ignore]
    Message as Message,
)

TYPE_PREFIX = "type.googleapis.com/"

TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
ROUTER_FILTER = "envoy.filters.http.router"
GRPC_STATS_FILTER = "envoy.filters.http.grpc_stats"
HTTP_PROTOCOL_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
TAGS_METADATA_KEY = "io.kuma.tags"
LB_METADATA_KEY = "envoy.lb"


def pack(message: Message) -> any_pb2.Any:
    """An ``Any`` holding ``message``, serialized deterministically (stable map order)."""
    return any_pb2.Any(
        type_url=TYPE_PREFIX + message.DESCRIPTOR.full_name,
        value=message.SerializeToString(deterministic=True),
    )


# Builders fill messages in place (``set_*``): with upb that is about three times faster than
# nesting constructors, which copy every sub-message they are given.


def set_socket_address(target: address_pb2.Address, address: str, port: int) -> None:
    socket = target.socket_address
    socket.address = address
    socket.port_value = port


def set_tags(target: base_pb2.Metadata, key: str, tags: Iterable[tuple[str, str]]) -> None:
    """Put ``tags`` as string values under the filter namespace ``key`` of ``target``."""
    fields = target.filter_metadata[key].fields
    for k, v in tags:
        fields[k].string_value = v


def tcp_proxy(stat_prefix: str, cluster: str, idle_timeout: int | None) -> tcp_proxy_pb2.TcpProxy:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix, cluster=cluster)
    if idle_timeout is not None:
        proxy.idle_timeout.seconds = idle_timeout
    return proxy


def add_tcp_proxy(
    chain: listener_components_pb2.FilterChain,
    stat_prefix: str,
    cluster: str,
    idle_timeout: int | None,
) -> None:
    proxy = tcp_proxy(stat_prefix, cluster, idle_timeout)
    chain.filters.add(name=TCP_PROXY_FILTER).typed_config.CopyFrom(pack(proxy))


def add_hcm(
    chain: listener_components_pb2.FilterChain, config: hcm_pb2.HttpConnectionManager
) -> None:
    chain.filters.add(name=HCM_FILTER).typed_config.CopyFrom(pack(config))


#: EDS over the aggregated stream.
ADS_CONFIG_SOURCE = config_source_pb2.ConfigSource(
    ads=config_source_pb2.AggregatedConfigSource(),
    resource_api_version=config_source_pb2.V3,
)

ROUTER = hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=pack(router_pb2.Router()))
GRPC_STATS = hcm_pb2.HttpFilter(
    name=GRPC_STATS_FILTER,
    typed_config=pack(grpc_stats_pb2.FilterConfig(emit_filter_state=True)),
)

#: Kuma's default internal addresses (``ipam.knownInternalCIDRs``: RFC 1918, RFC 4193 and
#: loopback): requests from these are internal for the HTTP connection manager
#: (``x-envoy-internal``, header sanitizing). Kuma drops the IPv6 ones for a proxy whose
#: kuma-dp reports IPv6 disabled; kuma-dp here does not, and Kuma's default is enabled.
KNOWN_INTERNAL_CIDRS = (
    ("10.0.0.0", 8),
    ("192.168.0.0", 16),
    ("172.16.0.0", 12),
    ("fc00::", 7),
    ("fd00::", 8),
    ("127.0.0.1", 32),
    ("::1", 128),
)
INTERNAL_ADDRESSES = hcm_pb2.HttpConnectionManager.InternalAddressConfig(
    cidr_ranges=[
        address_pb2.CidrRange(address_prefix=prefix, prefix_len=wrappers_pb2.UInt32Value(value=n))
        for prefix, n in KNOWN_INTERNAL_CIDRS
    ]
)
