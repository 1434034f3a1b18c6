"""Endpoints in other zones: a consumer reaches a service another zone has through that zone's
ZoneIngress (Kuma v2.7 ``fillIngressOutbounds`` and ``GetLocality`` in
``pkg/xds/topology/outbound.go``).

- A ZoneIngress is **remote** when its ``zone`` is set and is not the local zone (global sends
  each zone the other zones' ingresses, kuma/kds/mapping.py).
- It counts only with a public address (``advertisedAddress`` and ``advertisedPort``), and only
  in meshes with mTLS on: the ingress routes by the TLS SNI the consumer's cluster originates
  (``tls.sni_from_tags``: ``<service>{mesh=<mesh>}``, plus a subset's tags).
- Each entry of its ``availableServices`` of the consumer's mesh becomes one endpoint of that
  service at the ingress's advertised address and port, with the entry's tags (its
  ``kuma.io/zone`` is the endpoint's locality) and **weight = the entry's instances**.
- Ingresses behind one load balancer share an address and port: per address and port only the
  first ingress by name that lists services contributes (Kuma keeps the first in its list).
- **Local endpoints** then weigh the number of such address:port pairs (at least 1): Kuma's
  ``endpointWeight``, so one remote instance weighs as much as one local one whatever the
  number of ingresses in front of it.
- **Local preference** is Kuma's: only with the Mesh's ``routing.localityAwareLoadBalancing``
  do endpoints of other zones get priority 1 (Envoy uses them when the local ones fail);
  without it every locality is at priority 0 and traffic spreads by weight (Kuma sets the
  locality either way). MeshLoadBalancingStrategy's ``localityAwareness`` (issue 16) would
  set priorities per consumer from the same localities.
- **Through the local ZoneEgress**: in a mesh with ``routing.zoneEgress`` (and mTLS, which the
  Mesh validation requires with it) each remote endpoint is replaced by one endpoint per
  ZoneEgress of this zone (its ``networking.address:port``) with the same tags and locality and
  weight 1 (Kuma's ``routeThroughZoneEgress`` branch of ``fillIngressOutbounds``: the egress
  balances over the ingresses, ``kuma/xds/generate/zone_egress.py``). The egress passes the TLS
  through, so the consumer's cluster is unchanged (same SNI, the service's SAN). Local
  endpoints keep their weight (Kuma counts the ingresses either way). No egress in the zone:
  no remote endpoint, as in Kuma.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from kuma.multizone.available_services import egress_routing
from kuma.resources.model import SERVICE_TAG, Mesh, ZoneIngress
from kuma.resources.mtls import enabled_backend

from .endpoints import Endpoint

#: An ingress's public address and port.
Coordinates = tuple[str, int]
#: (mesh, service) → the endpoints an ingress contributes, sorted.
Contribution = Mapping[tuple[str, str], tuple[Endpoint, ...]]


class LocalityPlan(NamedTuple):
    """What shapes a mesh's ClusterLoadAssignments beside the endpoints themselves."""

    #: Whether the endpoints of remote ingresses are used (mesh mTLS on).
    remote: bool = False
    #: The weight of a local endpoint (Kuma's ``endpointWeight``).
    local_weight: int = 1
    #: With locality-aware load balancing, the local zone: other zones get priority 1.
    priority_zone: str | None = None
    #: With ``routing.zoneEgress``, this zone's egresses (address, port), sorted: remote
    #: endpoints go through them (:func:`through_egresses`); None: straight to the ingresses.
    egresses: tuple[Coordinates, ...] | None = None


LOCAL_ONLY = LocalityPlan()


def locality_plan(
    mesh: Mesh | None, local_zone: str, instances: int, egresses: Iterable[Coordinates] = ()
) -> LocalityPlan:
    """The plan of ``mesh`` in zone ``local_zone`` with ``instances`` remote ingress
    address:port pairs that list services and the zone's ZoneEgresses at ``egresses``."""
    if mesh is None or enabled_backend(mesh) is None:
        return LOCAL_ONLY
    aware = bool((mesh.routing or {}).get("localityAwareLoadBalancing"))
    via = tuple(sorted(set(egresses))) if egress_routing(mesh) else None
    return LocalityPlan(True, max(1, instances), local_zone if aware and local_zone else None, via)


def through_egresses(
    remote: Iterable[Endpoint], egresses: Iterable[Coordinates]
) -> tuple[Endpoint, ...]:
    """Remote endpoints as a consumer reaches them through the zone's egresses: per remote
    endpoint, one per egress with its tags and locality, weight 1. Identical results (two
    ingresses listing the same tags) are kept once: Kuma emits both, which Envoy would merge
    (one host per address in a locality) or count twice."""
    found = {
        Endpoint(address, port, endpoint.tags, endpoint.zone, 1)
        for endpoint in remote
        for address, port in egresses
    }
    return tuple(sorted(found, key=Endpoint.sort_key))


def is_remote(ingress: ZoneIngress, local_zone: str) -> bool:
    """Kuma's ``IsRemoteIngress``: another zone's ingress (one without a zone is nobody's)."""
    return bool(ingress.zone) and ingress.zone != local_zone


def listed_services(ingress: ZoneIngress, local_zone: str) -> frozenset[tuple[str, str]]:
    """The (mesh, service) pairs a remote ingress lists: services that exist in the mesh for
    this zone's transparent proxies (a VIP and a ``.mesh`` name, Kuma's VIP allocator), with
    or without a public address; none for a local ingress."""
    if not is_remote(ingress, local_zone):
        return frozenset()
    return frozenset(
        (available.mesh, service)
        for available in ingress.available_services
        if (service := available.tags.get(SERVICE_TAG, ""))
    )


def remote_coordinates(ingress: ZoneIngress, local_zone: str) -> Coordinates | None:
    """The public address of a remote ingress; None for a local one or one without it."""
    if not is_remote(ingress, local_zone):
        return None
    networking = ingress.networking
    if networking is None or not networking.advertised_address or not networking.advertised_port:
        return None
    return (networking.advertised_address, networking.advertised_port)


def contribution(
    ingress: ZoneIngress, at: Coordinates
) -> dict[tuple[str, str], tuple[Endpoint, ...]]:
    """The endpoints a remote ingress (at its public address ``at``) gives each (mesh,
    service)."""
    address, port = at
    grouped: dict[tuple[str, str], list[Endpoint]] = {}
    for available in ingress.available_services:
        service = available.tags.get(SERVICE_TAG, "")
        if not service:
            continue  # validation refuses it; nothing to name a cluster after
        endpoint = Endpoint.of(address, port, available.tags, weight=available.instances)
        grouped.setdefault((available.mesh, service), []).append(endpoint)
    return {key: tuple(sorted(group, key=Endpoint.sort_key)) for key, group in grouped.items()}


class RemoteEndpoints(NamedTuple):
    """Every remote ingress's endpoints, computed from scratch (the reference the engine's
    incremental :class:`~kuma.xds.engine.handlers.zone_ingress.ZoneIngressHandler` is checked
    against)."""

    by_service: Mapping[tuple[str, str], tuple[Endpoint, ...]]
    #: Address:port pairs with a contributing ingress.
    instances: int

    def of(self, mesh: str, service: str) -> tuple[Endpoint, ...]:
        return self.by_service.get((mesh, service), ())


NO_REMOTE = RemoteEndpoints({}, 0)


def remote_endpoints(ingresses: Iterable[ZoneIngress], local_zone: str) -> RemoteEndpoints:
    serving: dict[Coordinates, ZoneIngress] = {}
    for ingress in sorted(ingresses, key=lambda i: i.name):
        at = remote_coordinates(ingress, local_zone)
        if at is not None and ingress.available_services and at not in serving:
            serving[at] = ingress
    by_service: dict[tuple[str, str], list[Endpoint]] = {}
    for at, ingress in serving.items():
        for key, endpoints in contribution(ingress, at).items():
            by_service.setdefault(key, []).extend(endpoints)
    return RemoteEndpoints(
        {k: tuple(sorted(v, key=Endpoint.sort_key)) for k, v in by_service.items()}, len(serving)
    )
