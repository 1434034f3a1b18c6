"""Virtual IPs for transparent proxying: one stable address per service of a mesh.

The address is derived from (mesh, service) alone: a hash into Kuma's default VIP range
240.0.0.0/4, so every kuma-cp instance computes the same address without coordination and a
restart changes nothing. On a hash collision inside one mesh, the service whose name sorts
first keeps the address and the other probes forward; this is deterministic for a given set of
services (every instance agrees once it has seen the same store), but a service appearing later
can in the rare colliding case move the VIP of a service that sorts after it.
"""

from __future__ import annotations

import hashlib
import ipaddress

VIP_NETWORK = ipaddress.IPv4Network("240.0.0.0/4")
_SIZE = VIP_NETWORK.num_addresses
_BASE = int(VIP_NETWORK.network_address)


def _slot(mesh: str, service: str, attempt: int) -> int:
    digest = hashlib.blake2b(f"{mesh}\x00{service}\x00{attempt}".encode(), digest_size=8).digest()
    # Skip the network's first and last address.
    return 1 + int.from_bytes(digest, "big") % (_SIZE - 2)


class VipAllocator:
    """VIPs of one mesh's services."""

    def __init__(self, mesh: str) -> None:
        self.mesh = mesh
        self._vips: dict[str, str] = {}
        self._owners: dict[int, str] = {}

    def get(self, service: str) -> str | None:
        return self._vips.get(service)

    def assign(self, services: set[str]) -> set[str]:
        """Make the allocation match ``services``; return the services whose VIP changed
        (appeared, vanished or moved)."""
        changed: set[str] = set()
        for service in list(self._vips):
            if service not in services:
                changed.add(service)
                del self._vips[service]
        if not changed and len(self._vips) == len(services):
            return changed
        self._owners.clear()
        previous = dict(self._vips)
        self._vips.clear()
        for service in sorted(services):
            attempt = 0
            while (slot := _slot(self.mesh, service, attempt)) in self._owners:
                attempt += 1
            self._owners[slot] = service
            self._vips[service] = str(ipaddress.IPv4Address(_BASE + slot))
        changed.update(s for s, vip in self._vips.items() if previous.get(s) != vip)
        return changed
