"""Facts about one Dataplane that several builders need (Kuma's ``dataplane_helpers.go``)."""

from __future__ import annotations

import ipaddress

from kuma.resources.model import PROTOCOL_TAG, Dataplane, Inbound

from .protocol import infer_protocol

#: Kuma's default IPv6 inbound redirect port, ignored as an explicit value (backward
#: compatibility in ``GetIPv6InboundRedirectPort``).
_DEFAULT_INBOUND_PORT_V6 = 15010
_LOOPBACKS = frozenset({"127.0.0.1", "::1"})


def is_transparent(dataplane: Dataplane) -> bool:
    """Kuma's ``IsUsingTransparentProxy`` (IPv4): both redirect ports set."""
    networking = dataplane.networking
    tp = networking.transparent_proxying if networking is not None else None
    return tp is not None and tp.redirect_port_inbound != 0 and tp.redirect_port_outbound != 0


def ipv6_inbound_redirect_port(dataplane: Dataplane) -> int:
    """Kuma's ``GetIPv6InboundRedirectPort``: 0 when the proxy redirects IPv4 only."""
    networking = dataplane.networking
    tp = networking.transparent_proxying if networking is not None else None
    if tp is None:
        return 0
    mode = (tp.ip_family_mode or "unspecified").lower()
    v6 = tp.redirect_port_inbound_v6 or 0
    if mode == "ipv4" or (mode == "unspecified" and v6 == 0):
        return 0
    if v6 > 0 and v6 != _DEFAULT_INBOUND_PORT_V6 and v6 != tp.redirect_port_inbound:
        return v6
    return tp.redirect_port_inbound


def inbound_protocol(inbound: Inbound) -> str:
    """The protocol of an inbound's own tag (untagged or unknown: tcp)."""
    return infer_protocol((inbound.tags.get(PROTOCOL_TAG),))


def is_ipv6(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 6
    except ValueError:
        return False


def is_loopback_workload(address: str) -> bool:
    """Kuma compares the application address with exactly 127.0.0.1 and ::1."""
    return address in _LOOPBACKS


def overlaps(a: str, b: str) -> bool:
    """Kuma's ``overlap``: equal addresses, or either one the unspecified address."""
    if a == b:
        return True
    try:
        ia, ib = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    return ia == ib or ia.is_unspecified or ib.is_unspecified
