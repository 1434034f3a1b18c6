"""MeshVips rules (not in Kuma, whose VIP list is an opaque Config: the allocator and the
engine rely on these, so a hand-written or corrupted list is refused at the store's door)."""

from __future__ import annotations

import ipaddress

from ..errors import Violation
from ..model import MeshVips
from .common import TAG_VALUE_CHARACTERS, check_name, go_quote, is_dns_name, is_tag_value

#: Kuma's default VIP range (``dnsServer.CIDR``): never routed, so a VIP cannot shadow a real
#: address the application might reach.
VIP_NETWORK = ipaddress.IPv4Network("240.0.0.0/4")


def validate_mesh_vips(vips: MeshVips, out: list[Violation]) -> None:
    # Named after its mesh, so the same rule as a mesh name.
    check_name(out, "name", vips.name)
    owners: dict[str, str] = {}
    entries = [(f"vips[{go_quote(s)}]", s, vips.vips[s], False) for s in sorted(vips.vips)]
    entries += [(f"hosts[{go_quote(h)}]", h, vips.hosts[h], True) for h in sorted(vips.hosts)]
    for field, name, address, host in entries:
        if host and not is_dns_name(name):
            out.append(Violation(field, "host name: must be a DNS name"))
        elif not host and not is_tag_value(name):
            out.append(Violation(field, f"service name: {TAG_VALUE_CHARACTERS}"))
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            out.append(Violation(field, "must be an IPv4 address"))
            continue
        if ip not in VIP_NETWORK:
            out.append(Violation(field, f"must be inside {VIP_NETWORK}"))
        label = f"host {go_quote(name)}" if host else go_quote(name)
        owner = owners.setdefault(str(ip), label)
        if owner != label:
            out.append(Violation(field, f"duplicates the VIP of {owner}"))
