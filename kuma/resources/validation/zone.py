"""ZoneIngress and ZoneEgress rules (Kuma: zone_ingress_validator.go, zone_egress_validator.go).

Paths are Kuma's: a bad address is reported at ``networking.address.address`` (and a zone
ingress's advertised one at ``networking.advertisedAddress.address``: Kuma's address helper
appends the field name a second time), a zone ingress's services at ``availableService[i]``
(the document's key is ``availableServices``).
"""

from __future__ import annotations

from ..errors import Violation
from ..model import Admin, ZoneEgress, ZoneEgressNetworking, ZoneIngress, ZoneIngressNetworking
from .common import (
    check_address,
    check_name,
    check_optional_port,
    check_port,
    check_service_tags,
    overlaps_loopback,
)

# A missing networking section is checked as an empty one (Kuma's nil-safe getters do the same):
# it then fails on the port.
_EMPTY_INGRESS_NETWORKING = ZoneIngressNetworking()
_EMPTY_EGRESS_NETWORKING = ZoneEgressNetworking()


def _admin_clashes(admin: Admin | None, address: str, port: int) -> bool:
    """Envoy's admin listens on 127.0.0.1: it clashes with a listener there or on a wildcard."""
    return (
        admin is not None and admin.port != 0 and admin.port == port and overlaps_loopback(address)
    )


def validate_zone_ingress(ingress: ZoneIngress, out: list[Violation]) -> None:
    check_name(out, "name", ingress.name)
    networking = ingress.networking or _EMPTY_INGRESS_NETWORKING
    advertised_address = networking.advertised_address or ""
    # Kuma cannot tell advertisedPort 0 from unset; neither is a port to advertise.
    advertised_port = networking.advertised_port or 0

    if _admin_clashes(networking.admin, networking.address, networking.port) or _admin_clashes(
        networking.admin, advertised_address, advertised_port
    ):
        out.append(Violation("networking.admin.port", "must differ from port"))
    if not advertised_address and advertised_port:
        out.append(
            Violation("networking.advertisedAddress", "has to be defined with advertisedPort")
        )
    if not advertised_port and advertised_address:
        out.append(
            Violation("networking.advertisedPort", "has to be defined with advertisedAddress")
        )
    # An empty address is allowed, as in Kuma: it may be filled in later (on Kubernetes, from
    # the Service); an ingress without one serves nothing until it is.
    if networking.address:
        check_address(out, "networking.address.address", networking.address)
    if advertised_address:
        check_address(out, "networking.advertisedAddress.address", advertised_address)
    check_port(out, "networking.port", networking.port)
    check_optional_port(out, "networking.advertisedPort", networking.advertised_port)
    if networking.admin is not None:  # not in Kuma: a port that cannot be bound
        check_optional_port(out, "networking.admin.port", networking.admin.port)

    for index, service in enumerate(ingress.available_services):
        check_service_tags(out, f"availableService[{index}].tags", service.tags)


def validate_zone_egress(egress: ZoneEgress, out: list[Violation]) -> None:
    check_name(out, "name", egress.name)
    networking = egress.networking or _EMPTY_EGRESS_NETWORKING
    if _admin_clashes(networking.admin, networking.address, networking.port):
        out.append(Violation("networking.admin.port", "must differ from port"))
    if networking.address:
        check_address(out, "networking.address.address", networking.address)
    check_port(out, "networking.port", networking.port)
    if networking.admin is not None:  # not in Kuma: a port that cannot be bound
        check_optional_port(out, "networking.admin.port", networking.admin.port)
