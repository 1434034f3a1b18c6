"""Global holds back a disabled zone's ZoneIngresses from the other zones (Kuma v2.7
``GlobalProvidedFilter`` in pkg/kds/context/context.go: a resource sent to every zone but its
own travels only while its zone's ``Zone`` is enabled; a zone without a ``Zone`` resource is
not held back, "no strong decision that might affect connectivity").

The other zones' consumers then lose the disabled zone's ingress (a delete over KDS), so
their Envoys stop sending traffic there; enabling the Zone again sends it back. Beyond Kuma,
whose reconciler notices the flip on its next tick, the outbox re-shapes the zone's ingresses
as soon as the Zone event arrives. (A disabled zone's own KDS streams are refused and cut,
:mod:`.zone_status`; Kuma 2.7 keeps serving them.)

Only the flip of ``enabled`` costs work: the zone's ingresses (kept by zone, few) are shaped
again; every other event is one set lookup.
"""

from __future__ import annotations

from kuma.resources import Resource, ResourceKey, Zone, ZoneIngress
from kuma.store import Operation, ResourceEvent


class ZoneGate:
    def __init__(self) -> None:
        #: Names of the Zones with ``enabled: false``.
        self._disabled: set[str] = set()
        #: zone → its ZoneIngresses as stored on global, by key.
        self._ingresses: dict[str, dict[ResourceKey, ZoneIngress]] = {}
        #: ZoneIngress key → the zone it was kept under.
        self._zone_of: dict[ResourceKey, str] = {}

    def admits(self, resource: Resource) -> bool:
        """Whether ``resource`` may travel (to the peers the outbox's withhold allows)."""
        return not (isinstance(resource, ZoneIngress) and resource.zone in self._disabled)

    def follow(self, event: ResourceEvent) -> list[tuple[ResourceKey, ZoneIngress]]:
        """Take ``event`` in; the ingresses to shape again (their Zone's ``enabled`` flipped)."""
        resource = event.resource
        deleted = event.operation is Operation.DELETE
        if isinstance(resource, ZoneIngress):
            key = event.key
            old_zone = self._zone_of.pop(key, None)
            if old_zone is not None:
                kept = self._ingresses[old_zone]
                kept.pop(key, None)
                if not kept:
                    del self._ingresses[old_zone]
            if not deleted and resource.zone:
                self._zone_of[key] = resource.zone
                self._ingresses.setdefault(resource.zone, {})[key] = resource
            return []
        if isinstance(resource, Zone):
            # A deleted Zone holds nothing back (Kuma: the zone is then not found).
            disabled = not deleted and not resource.is_enabled
            if disabled == (resource.name in self._disabled):
                return []
            if disabled:
                self._disabled.add(resource.name)
            else:
                self._disabled.discard(resource.name)
            return list(self._ingresses.get(resource.name, {}).items())
        return []
