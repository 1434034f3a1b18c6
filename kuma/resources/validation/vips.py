"""MeshVips rules (not in Kuma, whose VIP list is an opaque Config: the allocator and the
engine rely on these, so a hand-written or corrupted list is refused at the store's door)."""

from __future__ import annotations

import ipaddress

from ..errors import Violation
from ..model import MeshVips
from .common import TAG_VALUE_CHARACTERS, check_name, go_quote, is_tag_value

#: Kuma's default VIP range (``dnsServer.CIDR``): never routed, so a VIP cannot shadow a real
#: address the application might reach.
VIP_NETWORK = ipaddress.IPv4Network("240.0.0.0/4")


def validate_mesh_vips(vips: MeshVips, out: list[Violation]) -> None:
    # Named after its mesh, so the same rule as a mesh name.
    check_name(out, "name", vips.name)
    owners: dict[str, str] = {}
    for service in sorted(vips.vips):
        field = f"vips[{go_quote(service)}]"
        if not is_tag_value(service):
            out.append(Violation(field, f"service name: {TAG_VALUE_CHARACTERS}"))
        address = vips.vips[service]
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            out.append(Violation(field, "must be an IPv4 address"))
            continue
        if ip not in VIP_NETWORK:
            out.append(Violation(field, f"must be inside {VIP_NETWORK}"))
        owner = owners.setdefault(str(ip), service)
        if owner != service:
            out.append(Violation(field, f"duplicates the VIP of {go_quote(owner)}"))
