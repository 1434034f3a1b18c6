"""Transparent proxies' VIP outbounds and DNS names of ExternalServices (Kuma v2.7's
``pkg/dns/vips_allocator.go`` entries for ExternalServices, turned into outbounds by
``pkg/xds/topology/dns.go`` ``VIPOutbounds``).

Per ExternalService (in name order) Kuma adds two entries:

* the *service* entry of its ``kuma.io/service`` with the ExternalService's port. The service's
  VIP (kuma/cp/vips.py) gets an outbound on that port and one on ``vip_port`` (80), and the names
  ``<service>.mesh``. A service that Dataplanes provide too has their port-0 entry first, so it
  gets only the ``vip_port`` outbound (the Dataplane path of ``proxy.outbounds_of``). Of several
  ExternalServices of one service, only the lowest port counts.
* the *host* entry of its host (unless ``disableHostDNSEntry``), one outbound per port: a DNS
  name gets a VIP of its own (``MeshVips.hosts``) answering that name, plus an outbound on
  ``vip_port`` when none of its ports is it; an IP host is its own address (an outbound on the
  real IP and port, no name). Two ExternalServices on the same host and port: the first by name
  wins (Kuma logs the conflict).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import NamedTuple

from kuma.resources import ExternalService
from kuma.resources.validation.common import is_dns_name
from kuma.resources.validation.external_service import split_host_port

from .dns import vip_names


class ExternalVip(NamedTuple):
    """One address an ExternalService is reached at by a transparent proxy."""

    address: str
    #: The DNS names answering ``address``.
    names: tuple[str, ...]
    #: (port, service), sorted by port.
    ports: tuple[tuple[int, str], ...]
    #: A host entry (which adds a ``vip_port`` outbound when it has a name and no such port).
    host: bool


def _host_port(resource: ExternalService) -> tuple[str, int] | None:
    networking = resource.networking
    parsed = split_host_port(networking.address) if networking is not None else None
    if parsed is None or not parsed[1].isdigit():
        return None
    return parsed[0], int(parsed[1])


def external_vip_entries(
    externals: Iterable[ExternalService],
    service_vips: Mapping[str, str],
    host_vips: Mapping[str, str],
    dataplane_services: Collection[str],
) -> tuple[ExternalVip, ...]:
    """The entries of a mesh's ExternalServices that have an address (a VIP stored for them,
    or an IP host). Sorted by address."""
    first_port: dict[str, int] = {}
    hosts: dict[str, dict[int, str]] = {}
    for resource in sorted(externals, key=lambda r: r.name):
        parsed = _host_port(resource)
        service = resource.service
        if parsed is None or not service:
            continue
        host, port = parsed
        if service not in dataplane_services:
            first_port[service] = min(port, first_port.get(service, port))
        networking = resource.networking
        if networking is not None and not networking.disable_host_dns_entry:
            hosts.setdefault(host, {}).setdefault(port, service)
    entries = [
        ExternalVip(vip, tuple(vip_names(service)), ((port, service),), host=False)
        for service, port in first_port.items()
        if (vip := service_vips.get(service)) is not None
    ]
    for host, ports in hosts.items():
        named = is_dns_name(host)
        address = host_vips.get(host) if named else host
        if address is not None:
            names = (host,) if named else ()
            entries.append(ExternalVip(address, names, tuple(sorted(ports.items())), host=True))
    return tuple(sorted(entries))


def external_vip_outbounds(
    entries: Iterable[ExternalVip], vip_port: int
) -> list[tuple[str, int, str]]:
    """(address, port, service) of every outbound of the entries (Kuma's ``VIPOutbounds``)."""
    result: list[tuple[str, int, str]] = []
    for entry in entries:
        result.extend((entry.address, port, service) for port, service in entry.ports)
        ports = {port for port, _ in entry.ports}
        if vip_port not in ports and (entry.names or not entry.host):
            result.append((entry.address, vip_port, entry.ports[0][1]))
    return result
