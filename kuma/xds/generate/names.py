"""Kuma's Envoy resource names (``pkg/xds/envoy/names/resource_names.go`` in Kuma v2.7).

Names are part of the user-visible surface: they show up in Envoy's admin pages, stats and
dashboards built for Kuma, so they follow Kuma exactly.
"""

from __future__ import annotations

import re

SEPARATOR = ":"

#: The STATIC cluster pointing at Envoy's own admin API (on loopback).
ENVOY_ADMIN_CLUSTER = "kuma:envoy:admin"
#: The STATIC cluster pointing at kuma-dp's readiness reporter (on loopback).
DP_READINESS_CLUSTER = "kuma:readiness"
#: The listener exposing a safe subset of the admin API (``/ready``) on the proxy's address.
ENVOY_ADMIN_LISTENER = "kuma:envoy:admin"

#: Transparent proxying: listeners on the redirect ports and their ORIGINAL_DST clusters share
#: these names (Kuma's ``pkg/xds/generator/transparent_proxy_generator.go``).
OUTBOUND_PASSTHROUGH_IPV4 = "outbound:passthrough:ipv4"
OUTBOUND_PASSTHROUGH_IPV6 = "outbound:passthrough:ipv6"
INBOUND_PASSTHROUGH_IPV4 = "inbound:passthrough:ipv4"
INBOUND_PASSTHROUGH_IPV6 = "inbound:passthrough:ipv6"

#: Source address of connections the inbound passthrough (and, with transparent proxying,
#: the local application clusters) open, so iptables lets them through without redirection.
INBOUND_PASSTHROUGH_SOURCE_IPV4 = "127.0.0.6"
INBOUND_PASSTHROUGH_SOURCE_IPV6 = "::6"

#: Header carrying the caller's tags between sidecars; inbound routes strip it.
TAGS_HEADER = "x-kuma-tags"

_ILLEGAL_METRIC_CHARS = re.compile(r"[^a-zA-Z_\-0-9]")


def join(*parts: str) -> str:
    return SEPARATOR.join(parts)


def join_host_port(address: str, port: int) -> str:
    """Go's ``net.JoinHostPort``: IPv6 literals are bracketed."""
    if ":" in address:
        return f"[{address}]:{port}"
    return f"{address}:{port}"


def sanitize_metric(name: str) -> str:
    """Kuma's ``SanitizeMetric``: every character outside ``[a-zA-Z0-9_-]`` becomes ``_``."""
    return _ILLEGAL_METRIC_CHARS.sub("_", name)


def inbound_listener_name(address: str, port: int) -> str:
    """``inbound:<address>:<port>`` for the inbound's effective address and (Envoy) port."""
    return "inbound:" + join_host_port(address, port)


def outbound_listener_name(address: str, port: int) -> str:
    """``outbound:<address>:<port>`` for an outbound (explicit or a transparent-proxy VIP)."""
    return "outbound:" + join_host_port(address, port)


def local_cluster_name(service_port: int) -> str:
    """``localhost:<servicePort>``: the STATIC cluster of an inbound's application."""
    return f"localhost:{service_port}"


def service_cluster_name(service: str) -> str:
    """The EDS cluster (and ClusterLoadAssignment) of a service is named after the service."""
    return service


def inbound_route_name(service: str) -> str:
    return "inbound:" + service


def outbound_route_name(service: str) -> str:
    return "outbound:" + service


#: The UDP listener of a transparent proxy's DNS (Kuma's ``GetDNSListenerName``).
DNS_LISTENER = "kuma:dns"
