"""What travels which way, and in which shape: the sender shapes a resource exactly as the
receiver stores it (Kuma's mappers also run on the sending side, pkg/kds/context), so the
receiver can tell from its own store which version it holds, and a reconnect sends only the
differences.

- **Global to zone**: Meshes, ExternalServices, MeshGateways and Mesh* policies authored on
  global (not the zones' own, ``kuma.io/origin: zone``), labelled ``kuma.io/origin: global``;
  mesh-scoped ones (policies, ExternalServices, MeshGateways) get Kuma's hashed name
  (``<name>-<hash of mesh and name>``) so they never collide with a zone's own of that name.
- **Secrets** (:mod:`.secrets`): every mesh Secret, under its own name, so a zone's mesh CAs
  and dataplane-token signing keys are global's; of the GlobalSecrets only the zone-token
  signing keys' public halves.
- **Zone to global**: the zone's Dataplanes, ZoneIngresses and ZoneEgresses, labelled
  ``kuma.io/origin: zone``, ``kuma.io/zone: <zone>`` and ``kuma.io/display-name: <name>``,
  under Kuma's hashed name (hash of mesh, name and zone), so two zones' ``web-01`` coexist.
  A ZoneIngress's or ZoneEgress's ``zone`` is the sending zone (Kuma's global sets it on
  receipt, pkg/kds/global/components.go; here the zone's sender shapes it and global checks).
- **Other zones' ZoneIngresses** go back down (Kuma's ``GlobalToAllButOriginalZoneFlag``):
  to every zone but the one in their ``zone`` (:func:`withheld_from`), under global's name,
  relabelled ``kuma.io/origin: global``; a zone's consumers reach those zones' services
  through them (kuma/xds/generate/cross_zone.py).
"""

from __future__ import annotations

import hashlib

import msgspec

from kuma.multizone import ORIGIN_LABEL, ZONE_TAG
from kuma.resources import (
    ExternalService,
    GlobalSecret,
    Mesh,
    MeshGateway,
    Resource,
    Secret,
    ZoneEgress,
    ZoneIngress,
)
from kuma.resources.policy import POLICY_KINDS

from .secrets import SECRET_KINDS, secret_to_zone, zone_refuses

GLOBAL_ORIGIN = "global"
ZONE_ORIGIN = "zone"
DISPLAY_NAME_LABEL = "kuma.io/display-name"
GLOBAL_LABELS = {ORIGIN_LABEL: GLOBAL_ORIGIN}

#: Kinds zones send up.
ZONE_KINDS = ("Dataplane", "ZoneIngress", "ZoneEgress")
_NAME_LIMIT = 253
#: k8s' SafeEncodeString alphabet (no vowels, no look-alikes), which Kuma's hash goes through.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


#: Besides policies and Secrets: kinds authored on global that every zone gets.
_GLOBAL_AUTHORED = frozenset({Mesh.TYPE, ExternalService.TYPE, MeshGateway.TYPE})


def global_kinds() -> tuple[str, ...]:
    """Kinds global sends down, Meshes first (policies refer to their mesh), then Secrets (a
    mesh's CA arrives before the policies, an ExternalService's TLS Secrets before it), other
    zones' ZoneIngresses last. Read when a stream starts: policy kinds register themselves at
    import."""
    return (
        Mesh.TYPE,
        *SECRET_KINDS,
        ExternalService.TYPE,
        MeshGateway.TYPE,
        *sorted(POLICY_KINDS),
        ZoneIngress.TYPE,
    )


def hashed_name(mesh: str, name: str, *extra: str) -> str:
    """Kuma's ``hash.HashedName``: FNV-1a 64 of the values, hex, mapped onto k8s' safe
    alphabet, appended to the name (shortened so the result fits 253 characters)."""
    digest = 0xCBF29CE484222325
    for value in (mesh, name, *extra):
        for byte in value.encode():
            digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    safe = "".join(_SAFE[ord(c) % len(_SAFE)] for c in format(digest, "016x"))
    limit = _NAME_LIMIT - len(safe) - 1
    short = name if len(name) <= limit else _shorten(name, limit)
    return f"{short}-{safe}"


def _shorten(name: str, limit: int) -> str:
    # Kuma's ShortenString keeps a prefix; a digest suffix keeps shortened names distinct.
    tail = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9]}-{tail}"


def _relabel(resource: Resource, name: str, labels: dict[str, str]) -> Resource:
    return msgspec.structs.replace(resource, name=name, labels={**resource.labels, **labels})


def to_zone(resource: Resource) -> Resource | None:
    """``resource`` (stored on global) as a zone stores it, or None if it does not go down."""
    if isinstance(resource, ZoneIngress):
        # Only zones' ingresses go down (never to their own zone: withheld_from), as stored.
        if resource.labels.get(ORIGIN_LABEL) != ZONE_ORIGIN or not resource.zone:
            return None
        return _relabel(resource, resource.name, GLOBAL_LABELS)
    if resource.labels.get(ORIGIN_LABEL) == ZONE_ORIGIN:
        return None
    if isinstance(resource, Secret | GlobalSecret):
        shaped = secret_to_zone(resource)
        # Kuma keeps Secrets' names: a zone finds them by name (<mesh>.ca-builtin-cert-<ca>).
        return None if shaped is None else _relabel(shaped, shaped.name, GLOBAL_LABELS)
    if resource.TYPE not in POLICY_KINDS and resource.TYPE not in _GLOBAL_AUTHORED:
        return None
    name = resource.name
    if resource.MESH_SCOPED:
        name = hashed_name(resource.mesh_name, resource.labels.get(DISPLAY_NAME_LABEL, name))
    return _relabel(resource, name, GLOBAL_LABELS)


def to_global(resource: Resource, zone: str) -> Resource | None:
    """``resource`` (stored on zone ``zone``) as global stores it, or None if it stays."""
    if resource.TYPE not in ZONE_KINDS or from_global(resource):
        return None
    if isinstance(resource, ZoneIngress | ZoneEgress) and resource.zone not in ("", zone):
        # Another zone's (global sent it): Kuma's ZoneProvidedFilter, !IsRemoteIngress.
        return None
    display = resource.labels.get(DISPLAY_NAME_LABEL, resource.name)
    labels = {ORIGIN_LABEL: ZONE_ORIGIN, ZONE_TAG: zone, DISPLAY_NAME_LABEL: display}
    if isinstance(resource, ZoneIngress | ZoneEgress):
        resource = msgspec.structs.replace(resource, zone=zone)
    return _relabel(resource, hashed_name(resource.mesh_name, display, zone), labels)


def withheld_from(resource: Resource) -> str | None:
    """The zone a resource global sends must not reach (None: every zone): a ZoneIngress is
    never sent back to its own zone (Kuma's ``GlobalProvidedFilter``)."""
    if isinstance(resource, ZoneIngress) and resource.zone:
        return resource.zone
    return None


def from_global(resource: Resource) -> bool:
    """On a zone: ``resource`` came from global (its KDS sink may replace or delete it)."""
    return resource.labels.get(ORIGIN_LABEL) == GLOBAL_ORIGIN


def zone_check(resource: Resource) -> str | None:
    """On a zone: why a resource global sent must not be stored (None: fine)."""
    return zone_refuses(resource)


def replaceable_on_zone(resource: Resource) -> bool:
    """On a zone: global's copy may overwrite it. A zone's own policy (origin ``zone``)
    never; a Mesh a zone kept from before it was federated, yes (zones do not author them)."""
    return resource.labels.get(ORIGIN_LABEL) != ZONE_ORIGIN


def from_zone(resource: Resource, zone: str) -> bool:
    """On global: ``resource`` came from zone ``zone``."""
    return (
        resource.labels.get(ORIGIN_LABEL) == ZONE_ORIGIN and resource.labels.get(ZONE_TAG) == zone
    )


def zone_violation(resource: Resource, zone: str) -> str | None:
    """On global: why ``resource``, sent by zone ``zone``, must not be stored (None: fine).
    A zone may only speak for itself, under the name global would give it."""
    if resource.TYPE not in ZONE_KINDS:
        return f"a zone does not send {resource.TYPE}s"
    if not from_zone(resource, zone):
        return f'labels must carry kuma.io/origin: zone and {ZONE_TAG}: "{zone}"'
    if isinstance(resource, ZoneIngress | ZoneEgress) and resource.zone != zone:
        return f'zone must be "{zone}"'
    display = resource.labels.get(DISPLAY_NAME_LABEL, "")
    if not display or resource.name != hashed_name(resource.mesh_name, display, zone):
        return f"the name must be the hash of its mesh, {DISPLAY_NAME_LABEL} and zone"
    return None
