"""Kuma's rules for a ZoneIngress's ``availableServices`` (pkg/xds/ingress/dataplane.go,
pkg/zone/available_services.go, v2.7.29), as pure functions.

One entry per (mesh, tag set): the tag set of a healthy inbound (state Ready or unset, and not
``health.ready: false``) of a Dataplane of an existing mesh, ``instances`` = how many such
inbounds carry exactly that set. Meshes without mTLS are listed too (Kuma does not look at
mTLS here). A gateway has no inbounds and lists nothing (Kuma adds MeshGateway listeners of
builtin gateways: not built here, there is no MeshGateway). ExternalServices are listed
(``externalService: true``, one entry per tag set, ``instances`` = how many ExternalServices
carry it) only in a mesh with ``routing.zoneEgress: true`` and only those tagged
``kuma.io/zone: <this zone>``. Entries are ordered as Kuma orders them: mesh, then the tags
as Kuma's string ``k1=v1,k2=v2`` (keys sorted); ExternalService entries follow the
Dataplanes'. Only the zone's own ingresses (``zone`` empty or this zone) carry the list.

:func:`from_scratch` is Kuma's full recompute; the control plane keeps the same list
incrementally (kuma/xds/engine/available_services.py) and tests compare the two.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from kuma.resources import Dataplane, ExternalService, Mesh, ZoneIngress
from kuma.resources.model import ZONE_TAG, AvailableService

#: An inbound's (or ExternalService's) tags, sorted by key.
TagSet = tuple[tuple[str, str], ...]
#: Tag set → how many instances carry it.
TagCounts = Counter[TagSet]


def kuma_order(mesh: str, tags: TagSet) -> tuple[str, str]:
    """Kuma's sort key of an entry (``serviceKeySlice``): mesh, then ``envoy.Tags.String()``."""
    return mesh, ",".join(f"{k}={v}" for k, v in tags)


def egress_routing(mesh: Mesh | None) -> bool:
    """Whether the mesh routes through zone egress (``routing.zoneEgress``): only then are its
    ExternalServices listed on the ingress (Kuma: ``ZoneEgressEnabled``)."""
    return mesh is not None and bool((mesh.routing or {}).get("zoneEgress"))


def lists_external(service: ExternalService, zone: str) -> bool:
    """An ExternalService is listed by the ingress of the zone its ``kuma.io/zone`` tag names."""
    return service.tags.get(ZONE_TAG) == zone


def carries_list(ingress: ZoneIngress, zone: str) -> bool:
    """Whether this control plane keeps ``ingress``'s list: its own zone's (or an ingress with
    no zone); other zones' ingresses, synced from global, are theirs to keep."""
    return ingress.zone in ("", zone)


def healthy_tag_sets(dataplane: Dataplane) -> list[TagSet]:
    """The tag set of each healthy inbound (Kuma's ``GetHealthyInbounds``)."""
    networking = dataplane.networking
    if networking is None:
        return []
    return [tuple(sorted(i.tags.items())) for i in networking.inbound if i.is_healthy]


def entries(
    dataplanes: Mapping[str, TagCounts], external: Mapping[str, TagCounts]
) -> tuple[AvailableService, ...]:
    """The list from counts per mesh: Dataplanes' entries, then ExternalServices', each in
    Kuma's order."""
    result = [
        AvailableService(tags=dict(tags), instances=n, mesh=mesh)
        for mesh, tags, n in _ordered(dataplanes)
    ]
    result.extend(
        AvailableService(tags=dict(tags), instances=n, mesh=mesh, external_service=True)
        for mesh, tags, n in _ordered(external)
    )
    return tuple(result)


def _ordered(counts: Mapping[str, TagCounts]) -> list[tuple[str, TagSet, int]]:
    rows = [(m, tags, n) for m, c in counts.items() for tags, n in c.items() if n > 0]
    rows.sort(key=lambda row: kuma_order(row[0], row[1]))
    return rows


def from_scratch(
    meshes: Iterable[Mesh],
    dataplanes: Iterable[Dataplane],
    external_services: Iterable[ExternalService],
    zone: str,
) -> tuple[AvailableService, ...]:
    """Kuma's recompute: every Dataplane and ExternalService of every existing mesh."""
    by_name = {m.name: m for m in meshes}
    counts: dict[str, TagCounts] = {}
    for dataplane in dataplanes:
        if dataplane.mesh in by_name:
            counts.setdefault(dataplane.mesh, Counter()).update(healthy_tag_sets(dataplane))
    external: dict[str, TagCounts] = {}
    for service in external_services:
        if egress_routing(by_name.get(service.mesh)) and lists_external(service, zone):
            external.setdefault(service.mesh, Counter())[tuple(sorted(service.tags.items()))] += 1
    return entries(counts, external)
