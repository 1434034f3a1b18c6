"""Kuma's validation rules: every broken rule of a resource at once, with Kuma's field paths
and messages (``networking.inbound[0].tags["kuma.io/service"]``: ``tag has to exist``).

:func:`validate` returns the violations; :func:`check` raises :class:`ValidationError`. Shape
errors (unknown keys, wrong types) are the codec's business and never reach this module.

Where this module knowingly differs from Kuma 2.7 (each is commented where it happens):

- stricter: duplicate inbound/outbound listeners, advertisedAddress, transparent-proxying ports
  and ipFamilyMode, admin port range, negative durations, an explicit ``servicePort: 0``, any
  spelling of the IPv6 wildcard, probe paths that are full URLs;
- laxer: serviceAddress equal to networking.address when the inbound listens elsewhere;
- paths are Kuma's, even where they are not the document's: probes on a builtin gateway at
  ``networking.probes``, a zone ingress's advertised address at
  ``networking.advertisedAddress.address`` and its services at ``availableService[i]``, a
  logging or tracing backend's conf at ``...config``: clients (and people) matching on
  Kuma's output find the same strings.
"""

from __future__ import annotations

from typing import assert_never

from ..errors import ValidationError, Violation
from ..model import (
    Dataplane,
    ExternalService,
    GlobalSecret,
    Mesh,
    MeshGateway,
    MeshVips,
    Policy,
    Resource,
    ResourceKey,
    Secret,
    Zone,
    ZoneEgress,
    ZoneIngress,
    ZoneInsight,
)
from .common import parse_duration_ns
from .dataplane import SUPPORTED_PROTOCOLS, validate_dataplane
from .external_service import validate_external_service
from .gateway import validate_mesh_gateway
from .mesh import validate_mesh
from .policy import validate_policy
from .secret import validate_secret
from .vips import VIP_NETWORK, validate_mesh_vips
from .zone import validate_zone_egress, validate_zone_ingress

__all__ = ["SUPPORTED_PROTOCOLS", "VIP_NETWORK", "check", "parse_duration_ns", "validate"]


def validate(resource: Resource) -> list[Violation]:
    """Every rule ``resource`` breaks, in Kuma's order; empty when it is valid."""
    violations: list[Violation] = []
    if isinstance(resource, Dataplane):  # by far the most common: tested first
        validate_dataplane(resource, violations)
    elif isinstance(resource, ZoneIngress):
        validate_zone_ingress(resource, violations)
    elif isinstance(resource, ZoneEgress):
        validate_zone_egress(resource, violations)
    elif isinstance(resource, Mesh):
        validate_mesh(resource, violations)
    elif isinstance(resource, Policy):
        validate_policy(resource, violations)
    elif isinstance(resource, MeshVips):
        validate_mesh_vips(resource, violations)
    elif isinstance(resource, Secret | GlobalSecret):
        validate_secret(resource, violations)
    elif isinstance(resource, ExternalService):
        validate_external_service(resource, violations)
    elif isinstance(resource, Zone | ZoneInsight):
        pass  # Kuma checks nothing beyond the name (a zone's name is checked where it connects)
    elif isinstance(resource, MeshGateway):
        validate_mesh_gateway(resource, violations)
    else:
        assert_never(resource)
    return violations


def check(resource: Resource) -> None:
    """Raise :class:`ValidationError` listing every broken rule, if there is any."""
    violations = validate(resource)
    if violations:
        raise ValidationError(violations, subject=str(ResourceKey.of(resource)))
