"""Who authors what: Kuma's rule (``pkg/api-server``, a type's KDS flags) for writes through
the REST API and kumactl.

- A **global** control plane authors what it sends to every zone (Meshes, Secrets,
  GlobalSecrets, ExternalServices, MeshGateways, policies) and its Zones; what zones send up
  (Dataplanes, ZoneIngresses, ZoneEgresses) is refused with Kuma's message.
- A **federated zone** (zone mode with a global address) authors what it sends up: its
  Dataplanes, ZoneIngresses and ZoneEgresses, and policies of its own marked
  ``kuma.io/origin: zone``; Meshes, Secrets, GlobalSecrets, ExternalServices and
  MeshGateways are refused with Kuma's message (Kuma 2.7 also lets a zone author its own
  MeshGateways; not here yet).
- **standalone** and a zone without a global author everything.

A zone control plane (federated or not) marks what it creates through the API with
``kuma.io/origin: zone`` and stamps ``kuma.io/zone`` on Dataplanes and ``zone`` on ZoneIngresses
and ZoneEgresses (:mod:`.zone_tag`).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from kuma.resources import (
    Dataplane,
    Resource,
    ValidationError,
    Violation,
    ZoneEgress,
    ZoneIngress,
)
from kuma.resources.policy import POLICY_KINDS

from .zone_tag import stamp_proxy_zone, stamp_zone

GLOBAL_READ_ONLY_MESSAGE = (
    "On global control plane you can not modify dataplane resources with 'kumactl apply' or via "
    "the HTTP API. You can still use 'kumactl' or the HTTP API to modify them on the zone "
    "control plane."
)
ZONE_READ_ONLY_MESSAGE = (
    "On zone control plane you can only modify zone resources with 'kumactl apply' or via the "
    "HTTP API. You can still use 'kumactl' or the HTTP API to modify the rest of the resource on "
    "the global control plane."
)
ORIGIN_LABEL = "kuma.io/origin"
ZONE_ORIGIN = "zone"
#: Kuma prefixes a zone's resources with ``<zone>.`` on global; the result must fit a name.
_MAX_GLOBAL_NAME = 253

#: Kinds global sends to every zone: authored on global.
_GLOBAL_TO_ZONES = frozenset({"Mesh", "Secret", "GlobalSecret", "ExternalService", "MeshGateway"})
#: Kinds authored on global that stay there (a zone's Zone: ``enabled: false`` refuses it).
_GLOBAL_ONLY = frozenset({"Zone"})
#: Kinds zones send to global: authored on zones.
_ZONE_TO_GLOBAL = frozenset({"Dataplane", "ZoneIngress", "ZoneEgress"})


def _is_policy(resource_type: str) -> bool:
    # Kuma's Mesh* policies travel both ways (created on global, or on a zone as zone-origin).
    return resource_type in POLICY_KINDS


@dataclass(frozen=True)
class Authoring:
    """The rules of one control plane; the default is standalone (everything allowed)."""

    #: ``standalone``, ``zone`` or ``global``.
    mode: str = "standalone"
    #: This zone's name (zone mode only).
    zone: str = ""
    #: Connected to a global (``multizone.zone.globalAddress`` set).
    federated: bool = False
    #: ``multizone.zone.disableOriginLabelValidation`` turned around.
    origin_label_validation: bool = True

    def refusal(self, resource_type: str) -> str | None:
        """Kuma's message when this control plane does not author ``resource_type``."""
        if self.mode == "global" and not (
            resource_type in _GLOBAL_TO_ZONES
            or resource_type in _GLOBAL_ONLY
            or _is_policy(resource_type)
        ):
            return GLOBAL_READ_ONLY_MESSAGE
        if self.federated and not (resource_type in _ZONE_TO_GLOBAL or _is_policy(resource_type)):
            return ZONE_READ_ONLY_MESSAGE
        return None

    def stored_refusal(self, stored: Resource) -> str | None:
        """Kuma's message when the stored ``stored`` may not be replaced or deleted here:
        on a federated zone, another zone's ZoneIngress that global sent (``kuma.io/origin:
        global``) is global's copy. Beyond Kuma (which lets a zone edit it until global's next
        change overwrites it)."""
        if (
            self.federated
            and stored.TYPE in _ZONE_TO_GLOBAL
            and stored.labels.get(ORIGIN_LABEL) == "global"
        ):
            return ZONE_READ_ONLY_MESSAGE
        return None

    def admit(self, resource: Resource, *, create: bool) -> Resource:
        """``resource`` as this control plane stores it when written through the API; raises
        :class:`ValidationError` (Kuma's field paths) when it cannot be written here."""
        violations: list[Violation] = []
        if self.federated:
            if len(f"{self.zone}.{resource.name}") >= _MAX_GLOBAL_NAME:
                violations.append(Violation("name", "the length of the name must be shorter"))
            if (
                self.origin_label_validation
                and _is_policy(resource.TYPE)
                and resource.labels.get(ORIGIN_LABEL) != ZONE_ORIGIN
            ):
                violations.append(
                    Violation(
                        f'labels["{ORIGIN_LABEL}"]',
                        f"the origin label must be set to '{ZONE_ORIGIN}'",
                    )
                )
        if violations:
            raise ValidationError(violations)
        if isinstance(resource, Dataplane):
            resource = stamp_zone(resource, self.zone)
        elif isinstance(resource, ZoneIngress | ZoneEgress):
            resource = stamp_proxy_zone(resource, self.zone)
        if self.mode == "zone" and create and resource.labels.get(ORIGIN_LABEL) != ZONE_ORIGIN:
            labels = {**resource.labels, ORIGIN_LABEL: ZONE_ORIGIN}
            resource = msgspec.structs.replace(resource, labels=labels)
        return resource
