"""MeshLoadBalancingStrategy ``localityAwareness``: what a consumer's ClusterLoadAssignment of
a service becomes (Kuma v2.7 ``plugin/v1alpha1/locality_aware.go``, ``priority.go`` and
``configureEndpoints`` in ``plugin.go``).

Kuma rewrites the CLA per consumer, after the generators built it. Here the rewrite is split in
two so that consumers keep sharing: :func:`locality_shape` reduces the consumer (its policies,
its tags, its zone) to a :class:`LocalityShape`, everything the rewrite reads; equal shapes give
equal CLAs, so the engine keys the rewritten CLA by (destination, shape), not by consumer.
:func:`shape_load_assignment` applies a shape to the shared CLA.

What Kuma does, for a consumer whose ``to`` rule for the service is a MeshLoadBalancingStrategy:

- ``localZone`` or ``crossZone`` given (``disabled`` is not read then): the CLA is rebuilt.
  An endpoint whose ``kuma.io/zone`` is the consumer's zone is local: priority 0, locality
  ``{zone}`` with weight 1, or, for the first affinity tag whose value the endpoint shares with
  the consumer (the consumer's first value of that key, in sorted order), locality
  ``{zone, subZone: key=value}`` with the tag's weight (default ``9 * 10^(n - i - 1)`` for the
  i-th of n tags: the first gets 90 %). Another zone's endpoint takes the priority of the
  first failover entry (1-based position in the list; entries whose ``from`` leaves out the
  consumer's zone are skipped but keep their position) that admits its zone (``Any``;
  ``Only`` listed; ``AnyExcept`` not listed; ``None`` admits nothing and is passed over), no
  locality weight; **no entry admits it: it is left out**. Localities sort by zone+subZone,
  endpoints by address and port. ``overprovisioningFactor`` is 200, or
  ``int(100 / failoverThreshold.percentage) * 100``.
- Otherwise, unless ``disabled: true``: every locality of another zone gets priority 1.
- Without a rule for the service nothing changes.

The consumer's zone is the ``kuma.io/zone`` of its own tags (a zone control plane stamps it on
every Dataplane it serves, ``kuma/multizone/zone_tag.py``, so it is that control plane's zone,
Kuma's ``proxy.Zone``); untagged (standalone) it is ``""``, which untagged endpoints match.

A ZoneEgress rebuilds the endpoints of its clusters to external services with
:func:`egress_shape` (``kuma.policies.egress``).

In a mesh routing through zone egresses (``egress``), every other zone's endpoint goes to one
locality ``egress_<hash of the failover groups>`` at priority 1 (Kuma's ``egressLocality``),
whether a failover entry admits its zone or not.

Not done (Kuma does): gateways' rules, clusters holding their endpoints (ExternalServices reached
directly).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from kuma.resources import Dataplane
from kuma.resources.model import ZONE_TAG

from .loadbalancing_envoy import decimal_of
from .matching import ProxyPolicies
from .meshloadbalancingstrategy import KIND, Conf, LocalityAwareness
from .plugin import service_element

LB_METADATA_KEY = "envoy.lb"
DEFAULT_OVERPROVISIONING = 200
#: Kuma's ``ToZoneType`` values that admit zones (``None`` admits none).
_ADMITTING = frozenset({"Any", "Only", "AnyExcept"})


@dataclass(frozen=True)
class LocalGroup:
    """Local endpoints tagged ``key: value`` (the consumer's value) get locality weight
    ``weight``."""

    key: str
    value: str
    weight: int


@dataclass(frozen=True)
class CrossZoneGroup:
    """Other zones' endpoints admitted by ``type``/``zones`` get ``priority``."""

    type: str
    zones: frozenset[str]
    priority: int

    def admits(self, zone: str) -> bool:
        if self.type == "Any":
            return True
        if self.type == "Only":
            return zone in self.zones
        if self.type == "AnyExcept":
            return zone not in self.zones
        return False


@dataclass(frozen=True)
class LocalityShape:
    """Everything the rewrite of one consumer's CLA reads (hashable: the engine's cache key).
    ``rebuild`` False: only other zones' localities move to priority 1."""

    zone: str
    rebuild: bool
    local: tuple[LocalGroup, ...] = ()
    cross_zone: tuple[CrossZoneGroup, ...] = ()
    overprovisioning: int = DEFAULT_OVERPROVISIONING
    #: In a mesh routing through zone egresses: the one locality (``egress_<hash>``, priority
    #: 1) of every other zone's endpoint; "" otherwise.
    egress: str = ""


def consumer_zone(dataplane: Dataplane) -> str:
    """The consumer's zone: the first ``kuma.io/zone`` value of its tags, ``""`` untagged."""
    zones = _tag_values(dataplane, ZONE_TAG)
    return zones[0] if zones else ""


def _tag_values(dataplane: Dataplane, key: str) -> list[str]:
    """Kuma's ``TagSet().Values(key)``: the distinct values of ``key`` over the inbounds' (and
    the gateway's) tags, sorted."""
    networking = dataplane.networking
    if networking is None:
        return []
    tag_sets: list[dict[str, str]] = [inbound.tags for inbound in networking.inbound]
    if networking.gateway is not None:
        tag_sets.append(networking.gateway.tags)
    return sorted({tags[key] for tags in tag_sets if key in tags})


def locality_shape(
    policies: ProxyPolicies, service: str, dataplane: Dataplane, *, egress: bool = False
) -> LocalityShape | None:
    """What the consumer's policies make of ``service``'s CLA; None: the shared CLA as is.
    Gateways are left out (Kuma applies gateway rules there, which are not built)."""
    matched = policies.get(KIND.name) if policies else None
    if matched is None or not matched.to_rules:
        return None
    networking = dataplane.networking
    if networking is None or networking.gateway is not None:
        return None
    conf: Conf | None = matched.to_conf(service_element(service))
    if conf is None:
        return None
    return shape_of(conf.locality_awareness, dataplane, egress=egress)


def shape_of(
    locality: LocalityAwareness | None, dataplane: Dataplane, *, egress: bool = False
) -> LocalityShape | None:
    """``egress``: the consumer's mesh routes through zone egresses (Kuma's
    ``ZoneEgressEnabled``)."""
    zone = consumer_zone(dataplane)
    if locality is None or (locality.local_zone is None and locality.cross_zone is None):
        if locality is not None and locality.disabled:
            return None
        return LocalityShape(zone, rebuild=False)
    shape = _rebuilt(locality, zone, lambda key: _tag_values(dataplane, key))
    if not egress:
        return shape
    return replace(shape, egress=_egress_locality(shape.cross_zone))


def _egress_locality(groups: tuple[CrossZoneGroup, ...]) -> str:
    """Kuma's ``egressLocality``: ``egress_`` and the first 8 characters of the base64 SHA-256
    of the failover groups (``<priority>:<zones>;``, ``<priority>:Any;``,
    ``<priority>:AnyExcept:<zones>;``, zones sorted and comma-joined; ``None`` left out)."""
    parts = []
    for group in groups:
        zones = ",".join(sorted(group.zones))
        if group.type == "Only":
            parts.append(f"{group.priority}:{zones};")
        elif group.type == "Any":
            parts.append(f"{group.priority}:Any;")
        elif group.type == "AnyExcept":
            parts.append(f"{group.priority}:AnyExcept:{zones};")
    digest = hashlib.sha256("".join(parts).encode()).digest()
    return "egress_" + base64.b64encode(digest).decode()[:8]


def egress_shape(locality: LocalityAwareness | None, zone: str) -> LocalityShape | None:
    """What a ZoneEgress in ``zone`` makes of the endpoints its cluster to an external service
    holds (Kuma's ``configureEgress``): as for a consumer in ``zone`` without tags (the egress
    has none, so no affinity group applies): rebuilt with ``localZone`` or ``crossZone``,
    otherwise other zones' localities at priority 1 unless ``disabled``."""
    if locality is None or (locality.local_zone is None and locality.cross_zone is None):
        if locality is not None and locality.disabled:
            return None
        return LocalityShape(zone, rebuild=False)
    return _rebuilt(locality, zone, lambda key: [])


def _rebuilt(
    locality: LocalityAwareness, zone: str, values_of: Callable[[str], list[str]]
) -> LocalityShape:
    local: list[LocalGroup] = []
    tags = (locality.local_zone.affinity_tags or ()) if locality.local_zone else ()
    for index, tag in enumerate(tags):
        values = values_of(tag.key)
        weight = tag.weight if tag.weight is not None else 9 * 10 ** (len(tags) - index - 1)
        if values:
            local.append(LocalGroup(tag.key, values[0], weight))
    cross: list[CrossZoneGroup] = []
    overprovisioning = DEFAULT_OVERPROVISIONING
    if locality.cross_zone is not None:
        for index, failover in enumerate(locality.cross_zone.failover):
            if failover.from_ is not None and zone not in failover.from_.zones:
                continue
            kind = failover.to.type if failover.to.type in _ADMITTING else "None"
            zones = frozenset(failover.to.zones or ()) if kind in ("Only", "AnyExcept") else None
            cross.append(CrossZoneGroup(kind, zones or frozenset(), index + 1))
        threshold = locality.cross_zone.failover_threshold
        if threshold is not None and threshold.percentage is not None:
            value = decimal_of(threshold.percentage)
            if value is not None and value != 0:
                # Go: uint32(100 / float) * 100 (the quotient truncated first).
                overprovisioning = int(Decimal(100) / value) * 100
    return LocalityShape(zone, True, tuple(local), tuple(cross), overprovisioning)


# --- the rewrite ---------------------------------------------------------------------------


def shape_load_assignment(
    base: endpoint_pb2.ClusterLoadAssignment, shape: LocalityShape
) -> endpoint_pb2.ClusterLoadAssignment:
    """``base`` (the shared CLA of a destination) as a consumer of ``shape`` gets it."""
    if not shape.rebuild:
        shaped = endpoint_pb2.ClusterLoadAssignment()
        shaped.CopyFrom(base)
        for group in shaped.endpoints:
            if group.HasField("locality") and group.locality.zone != shape.zone:
                group.priority = 1
        return shaped
    # (zone, subZone) → (priority, locality weight, endpoints)
    placed: dict[tuple[str, str], tuple[int, int, list[endpoint_components_pb2.LbEndpoint]]] = {}
    for group in base.endpoints:
        for endpoint in group.lb_endpoints:
            where = _place(endpoint, shape)
            if where is None:
                continue
            zone, sub_zone, priority, weight = where
            placed.setdefault((zone, sub_zone), (priority, weight, []))[2].append(endpoint)
    shaped = endpoint_pb2.ClusterLoadAssignment(cluster_name=base.cluster_name)
    for (zone, sub_zone), (priority, weight, endpoints) in sorted(
        placed.items(), key=lambda item: item[0][0] + item[0][1]
    ):
        out = shaped.endpoints.add(priority=priority)
        out.locality.zone = zone
        out.locality.sub_zone = sub_zone
        if weight > 0:
            out.load_balancing_weight.value = weight
        out.lb_endpoints.extend(sorted(endpoints, key=_address))
    shaped.policy.overprovisioning_factor.value = shape.overprovisioning
    return shaped


def _place(
    endpoint: endpoint_components_pb2.LbEndpoint, shape: LocalityShape
) -> tuple[str, str, int, int] | None:
    """(zone, subZone, priority, locality weight) of one endpoint; None: left out."""
    tags = _lb_tags(endpoint)
    zone = tags.get(ZONE_TAG, "")
    if zone == shape.zone:
        for group in shape.local:
            if tags.get(group.key) == group.value:
                return (shape.zone, f"{group.key}={group.value}", 0, group.weight)
        return (shape.zone, "", 0, 1)
    if shape.egress:
        # Kuma: with egress every other zone is reached through it, one locality for all.
        return (shape.egress, "", 1, 0)
    for cross in shape.cross_zone:
        if cross.admits(zone):
            return (zone, "", cross.priority, 0)
    return None


def _lb_tags(endpoint: endpoint_components_pb2.LbEndpoint) -> dict[str, str]:
    found = endpoint.metadata.filter_metadata.get(LB_METADATA_KEY)
    if found is None:
        return {}
    return {key: value.string_value for key, value in found.fields.items()}


def _address(endpoint: endpoint_components_pb2.LbEndpoint) -> tuple[str, int]:
    socket = endpoint.endpoint.address.socket_address
    return (socket.address, socket.port_value)
