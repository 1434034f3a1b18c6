"""HTTPS and TLS listeners of a builtin gateway (``tls.mode: TERMINATE``; PASSTHROUGH for TLS:
no transport socket) as Kuma 2.7 builds them
(runtime/gateway ``filter_chain_generator.go``: ``HTTPSFilterChainGenerator``,
``TCPFilterChainGenerator``, ``configureTLS``, ``newDownstreamTypedConfig``; compared with
meshhttproute's ``gateway-listener-different-hostnames-specific`` and meshtcproute's
``gateway`` goldens).

One listener per port, named ``<gateway>:HTTPS:<port>`` (``:TLS:``); one filter chain per listener
hostname, most exact first, matching the transport protocol ``tls`` and the hostname as SNI
(``*`` matches any). The chain terminates TLS with the hostname's certificates served over SDS
(``cert.<type>:<scope>:<id>``, :mod:`.certificates`), TLS 1.2 at least, no client certificate,
and ALPN ``h2``/``http/1.1`` for HTTPS. An HTTPS chain's connection manager is the HTTP
listener's, with its own route configuration ``<listener>:<hostname>``; a TLS chain proxies to
the backends of the MeshTCPRoutes for its hostname.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from kuma.xds.generate._pb import ADS_CONFIG_SOURCE, HCM_FILTER, TCP_PROXY_FILTER, pack

from .resources import base_listener, connection_manager, listener_name, tcp_proxy

TLS_SOCKET = "envoy.transport_sockets.tls"
_ALPN = ("h2", "http/1.1")


class TlsChain(NamedTuple):
    """One listener hostname of a TERMINATE listener: its certificates' Secret names and, for
    TLS, the weighted backend clusters."""

    hostname: str
    secrets: tuple[str, ...]
    clusters: tuple[tuple[str, int], ...] = ()
    #: False: PASSTHROUGH (TLS only), no transport socket.
    terminate: bool = True


def https_route_config_name(listener: str, hostname: str) -> str:
    """Kuma's ``EnvoyRouteName``: HTTPS listeners have a route configuration per hostname."""
    return f"{listener}:{hostname}"


def https_listener(
    gateway: str, service: str, address: str, port: int, chains: Sequence[TlsChain]
) -> listener_pb2.Listener:
    name = listener_name(gateway, "HTTPS", port)
    listener = base_listener(name, address, port)
    for chain in chains:
        hcm = connection_manager(service, https_route_config_name(name, chain.hostname))
        envoy_chain = _chain(listener, chain, _ALPN)
        envoy_chain.filters.add(name=HCM_FILTER, typed_config=pack(hcm))
    return listener


def tls_listener(
    gateway: str, service: str, address: str, port: int, chains: Sequence[TlsChain]
) -> listener_pb2.Listener:
    listener = base_listener(listener_name(gateway, "TLS", port), address, port)
    for chain in chains:
        proxy = tcp_proxy(service, sorted(chain.clusters))
        envoy_chain = _chain(listener, chain, ())
        envoy_chain.filters.add(name=TCP_PROXY_FILTER, typed_config=pack(proxy))
    return listener


def _chain(
    listener: listener_pb2.Listener, chain: TlsChain, alpn: Sequence[str]
) -> listener_pb2.FilterChain:
    envoy_chain = listener.filter_chains.add()
    if chain.hostname not in ("", "*"):  # Envoy has no "any name": leave it out
        envoy_chain.filter_chain_match.server_names.append(chain.hostname)
    envoy_chain.filter_chain_match.transport_protocol = "tls"
    if not chain.terminate:
        return envoy_chain
    envoy_chain.transport_socket.name = TLS_SOCKET
    envoy_chain.transport_socket.typed_config.CopyFrom(pack(downstream_tls(chain.secrets, alpn)))
    return envoy_chain


def downstream_tls(secrets: Sequence[str], alpn: Sequence[str]) -> tls_pb2.DownstreamTlsContext:
    """Kuma's ``newDownstreamTypedConfig`` with the certificates' SDS configs."""
    context = tls_pb2.DownstreamTlsContext()
    common = context.common_tls_context
    common.tls_params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
    common.alpn_protocols.extend(alpn)
    for name in secrets:
        config = common.tls_certificate_sds_secret_configs.add(name=name)
        config.sds_config.CopyFrom(ADS_CONFIG_SOURCE)
    context.require_client_certificate.value = False
    return context
