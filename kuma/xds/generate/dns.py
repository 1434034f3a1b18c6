"""The DNS listener of a transparent proxy (Kuma's ``pkg/xds/generator/dns_generator.go``).

``kuma:dns`` is a UDP listener on 127.0.0.1:<dns port> (and [::1] when the proxy redirects
IPv6: ip6tables REDIRECTs DNS there) whose ``envoy.filters.udp.dns_filter`` answers the names
of the mesh's virtual IPs from an inline table and forwards every other name to the host's
resolvers (c-ares reading the host's /etc/resolv.conf; Envoy runs as the kuma-dp user, whose
DNS the transparent-proxy rules never redirect, so this cannot loop).

Kuma runs CoreDNS in kuma-dp for the forwarding and lets Envoy answer only the mesh names; here
Envoy does both, so a new service's name is served by the same xDS update that brings its
outbound, with no extra process. The forwarding answers A and AAAA queries only (Envoy's DNS
filter answers other types from its table alone: NOTIMP otherwise).

Names per VIP (Kuma's ``VIPOutbounds`` for services): ``<service>.<domain>`` and, when the
service has underscores, the same with each ``_`` replaced by ``.``. Each name answers the VIP
(A) and, with IPv6, its IPv4-mapped form (AAAA), with a 30s TTL. ExternalServices add
``<service>.mesh`` for their service's VIP and their host name for its own VIP
(``external_vips.py``), served only to proxies with an outbound on that VIP, as in Kuma.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.udp.dns_filter.v3 import dns_filter_pb2
from envoy.extensions.network.dns_resolver.cares.v3 import cares_dns_resolver_pb2

from kuma.resources.model import Dataplane

from ._pb import pack
from .dataplane import ipv6_inbound_redirect_port, is_transparent
from .destination import Destination
from .names import DNS_LISTENER

#: Kuma's ``dnsServer.domain``.
DEFAULT_DOMAIN = "mesh"
#: Kuma's answer TTL for VIP names.
ANSWER_TTL_SECONDS = 30
DNS_FILTER = "envoy.filters.udp.dns_filter"
CARES_RESOLVER = "envoy.network.dns_resolver.cares"
#: How long a forwarded query may take before the client gets SERVFAIL.
UPSTREAM_TIMEOUT_SECONDS = 5
#: Forwarded queries in flight at once (Envoy's default is 0: none at all).
MAX_PENDING_LOOKUPS = 256
_LOOPBACK_V4 = "127.0.0.1"
_LOOPBACK_V6 = "::1"


def vip_names(service: str, domain: str = DEFAULT_DOMAIN) -> list[str]:
    """The DNS names of a service's VIP."""
    names = [f"{service}.{domain}"]
    dotted = f"{service.replace('_', '.')}.{domain}"
    if dotted != names[0]:
        names.append(dotted)
    return names


def ipv4_mapped(address: str) -> str:
    """Kuma's ``ToV6``: 240.0.0.1 → ``::ffff:f000:1`` (an IPv6 address is returned as is)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        return address
    return str(ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed))


def _set_udp_address(target: address_pb2.Address, address: str, port: int) -> None:
    socket = target.socket_address
    socket.address = address
    socket.port_value = port
    socket.protocol = address_pb2.SocketAddress.UDP


def _answers(vip: str, ipv6: bool) -> list[str]:
    if ipv6 and ipv4_mapped(vip) != vip:
        return [vip, ipv4_mapped(vip)]
    return [vip]


def dns_filter_config(
    records: Iterable[tuple[str, str]],
    *,
    ipv6: bool,
    domain: str = DEFAULT_DOMAIN,
    names: Iterable[tuple[str, str]] = (),
) -> dns_filter_pb2.DnsFilterConfig:
    """The filter: ``records`` are (service, vip) pairs, ``names`` (name, vip) pairs taken as
    written (ExternalServices' entries); table entries are sorted by name."""
    table: dict[str, list[str]] = {}
    for name, vip in names:
        table[name] = _answers(vip, ipv6)
    for service, vip in records:
        for name in vip_names(service, domain):
            table[name] = _answers(vip, ipv6)
    config = dns_filter_pb2.DnsFilterConfig(stat_prefix="kuma_dns")
    inline = config.server_config.inline_dns_table
    for name in sorted(table):
        entry = inline.virtual_domains.add(name=name)
        entry.endpoint.address_list.address.extend(table[name])
        entry.answer_ttl.seconds = ANSWER_TTL_SECONDS
    client = config.client_config
    client.resolver_timeout.seconds = UPSTREAM_TIMEOUT_SECONDS
    client.max_pending_lookups = MAX_PENDING_LOOKUPS
    resolver = cares_dns_resolver_pb2.CaresDnsResolverConfig()
    # No resolvers listed: c-ares reads the host's /etc/resolv.conf. No default search domain:
    # the name a client asks for is fully qualified already.
    resolver.dns_resolver_options.no_default_search_domain = True
    typed = client.typed_dns_resolver_config
    typed.name = CARES_RESOLVER
    typed.typed_config.CopyFrom(pack(resolver))
    return config


def dns_listener(
    port: int,
    records: Iterable[tuple[str, str]],
    *,
    ipv6: bool,
    answer_ipv6: bool | None = None,
    domain: str = DEFAULT_DOMAIN,
    names: Iterable[tuple[str, str]] = (),
) -> listener_pb2.Listener:
    """``kuma:dns`` on 127.0.0.1:``port`` (and [::1]:``port`` with ``ipv6``); AAAA answers
    (IPv4-mapped VIPs) with ``answer_ipv6`` (default: ``ipv6``)."""
    if answer_ipv6 is None:
        answer_ipv6 = ipv6
    listener = listener_pb2.Listener(name=DNS_LISTENER, traffic_direction=1)  # INBOUND
    _set_udp_address(listener.address, _LOOPBACK_V4, port)
    if ipv6:
        _set_udp_address(listener.additional_addresses.add().address, _LOOPBACK_V6, port)
    # Two listeners on one port while an update drains the old one: no query is refused.
    listener.enable_reuse_port.value = True
    listener.listener_filters.add(name=DNS_FILTER).typed_config.CopyFrom(
        pack(dns_filter_config(records, ipv6=answer_ipv6, domain=domain, names=names))
    )
    return listener


def dns_records(
    outbounds: Iterable[tuple[str, int, Destination]], vip_of: Callable[[str], str | None]
) -> list[tuple[str, str]]:
    """(service, vip) of each outbound (address, port, destination) on its service's VIP: as in
    Kuma, a VIP the proxy has no outbound for gets no name. Sorted."""
    return sorted(
        {(d.service, address) for address, _, d in outbounds if vip_of(d.service) == address}
    )


def proxy_dns_listener(
    dataplane: Dataplane,
    outbounds: Iterable[tuple[str, int, Destination]],
    vip_of: Callable[[str], str | None],
    dns_port: int,
    *,
    domain: str = DEFAULT_DOMAIN,
    named: Iterable[tuple[str, Iterable[str]]] = (),
) -> listener_pb2.Listener | None:
    """The proxy's ``kuma:dns``, for its ``outbounds`` (``proxy.outbounds_of``): only for a
    transparent proxy whose kuma-dp asked for DNS (``dns_port`` from its node metadata, 0:
    none).

    ``named``: (address, names) of other VIPs (ExternalServices'); as in Kuma, their names are
    served only when the proxy has an outbound on that address.

    AAAA answers unless the proxy is IPv4-only (Kuma's rule); the [::1] socket only when the
    proxy redirects IPv6 (then its Envoy binds IPv6 redirect listeners anyway)."""
    networking = dataplane.networking
    if dns_port == 0 or networking is None or not is_transparent(dataplane):
        return None
    tp = networking.transparent_proxying
    assert tp is not None
    mode = (tp.ip_family_mode or "").lower()
    outbounds = list(outbounds)
    addresses = {address for address, _, _ in outbounds}
    names = sorted((n, a) for a, found in named if a in addresses for n in found)
    return dns_listener(
        dns_port,
        dns_records(outbounds, vip_of),
        ipv6=ipv6_inbound_redirect_port(dataplane) != 0,
        answer_ipv6=mode != "ipv4",
        domain=domain,
        names=names,
    )
