"""The ``kuma.io/zone`` tag: a zone control plane sets it on every inbound (and the gateway)
of its Dataplanes, and the tag cannot be forged.

Kuma's zone overwrites whatever value a Dataplane brings. Here a Dataplane that names another
zone is refused where it is written (REST, kumactl, kuma-dp registration) with an error naming
the field, so a mistake is seen instead of silently corrected; what is served is stamped again
(``stamp_zone(..., strict=False)``), so a Dataplane written straight into the store (a file in
the directory store, a key in etcd) is still served with this zone's tag.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from kuma.resources import Dataplane, ValidationError, Violation, ZoneEgress, ZoneIngress

_ZoneProxy = TypeVar("_ZoneProxy", bound=ZoneIngress | ZoneEgress)

ZONE_TAG = "kuma.io/zone"


def stamp_zone(dataplane: Dataplane, zone: str, *, strict: bool = True) -> Dataplane:
    """``dataplane`` with ``kuma.io/zone: <zone>`` on every inbound and on its gateway; itself
    when nothing changes (and always when ``zone`` is empty: not a zone control plane).

    ``strict``: raise :class:`ValidationError` when a tag names another zone instead of
    replacing it."""
    networking = dataplane.networking
    if not zone or networking is None:
        return dataplane
    violations: list[Violation] = []

    def tagged(tags: dict[str, str], field: str) -> dict[str, str]:
        current = tags.get(ZONE_TAG)
        if current is not None and current != zone and strict:
            violations.append(
                Violation(
                    f'{field}.tags["{ZONE_TAG}"]',
                    f"cannot be {current!r}: this control plane is zone {zone!r} and sets the "
                    "tag itself (leave it out)",
                )
            )
        return tags if current == zone else {**tags, ZONE_TAG: zone}

    inbounds = tuple(
        msgspec.structs.replace(inbound, tags=tagged(inbound.tags, f"networking.inbound[{i}]"))
        for i, inbound in enumerate(networking.inbound)
    )
    gateway = networking.gateway
    if gateway is not None:
        gateway = msgspec.structs.replace(gateway, tags=tagged(gateway.tags, "networking.gateway"))
    if violations:
        raise ValidationError(violations, subject=f"Dataplane {dataplane.mesh}/{dataplane.name}")
    stamped = msgspec.structs.replace(
        dataplane, networking=msgspec.structs.replace(networking, inbound=inbounds, gateway=gateway)
    )
    return dataplane if stamped == dataplane else stamped


def stamp_proxy_zone(proxy: _ZoneProxy, zone: str) -> _ZoneProxy:
    """A zone proxy registered on zone ``zone`` gets ``zone: <zone>``; one that names another
    zone is refused (:class:`ValidationError`), as a Dataplane's tag is. Unchanged when ``zone``
    is empty (not a zone control plane)."""
    if not zone or proxy.zone == zone:
        return proxy
    if proxy.zone:
        raise ValidationError(
            [
                Violation(
                    "zone",
                    f"cannot be {proxy.zone!r}: this control plane is zone {zone!r} and sets the "
                    "zone itself (leave it out)",
                )
            ],
            subject=f"{proxy.TYPE} {proxy.name}",
        )
    return msgspec.structs.replace(proxy, zone=zone)
