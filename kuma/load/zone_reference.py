"""What a zone's kuma-cp should serve its sidecars in a multi-zone mesh: the single-zone
reference (kuma/load/reference.py) with this zone's ``kuma.io/zone`` stamped on every inbound
and, for every service, the other zone's ZoneIngress as one more endpoint per tag set.

The other zone's ingress list is computed with Kuma's own rules
(``kuma.multizone.available_services.from_scratch``) over the other zone's Dataplanes as the
driver wrote them, and turned into endpoints with the generator's own
``kuma.xds.generate.cross_zone`` (its advertised address, weight = instances, locality =
the other zone). A change in the other zone (:meth:`ZoneReference.apply_remote`) recomputes the
entries of the changed service only (its instances), which is all that changes in the list.
"""

from __future__ import annotations

from collections.abc import Iterable

from kuma.multizone.available_services import from_scratch
from kuma.multizone.zone_tag import stamp_zone
from kuma.resources import Dataplane, Mesh, ZoneIngress, from_document
from kuma.resources.model import ZoneIngressNetworking
from kuma.xds.generate import Endpoint
from kuma.xds.generate.cross_zone import LocalityPlan, contribution, locality_plan

from .mesh import Change, Plan, Revisions
from .reference import Prediction, Reference, RefView

#: The key the other zone's ingress contributes under in the view (no Dataplane name has it).
_REMOTE = "\0ingress"


class ZoneRefView(RefView):
    """A zone's view: its own Dataplanes, plus another zone's ingress (:meth:`put_group`)."""

    def __init__(self, mesh: Mesh, dataplanes: Iterable[Dataplane], zone: str) -> None:
        super().__init__(mesh, dataplanes)
        # One remote ingress address:port lists services (Kuma's endpointWeight).
        self._plan = locality_plan(mesh, zone, 1)

    def locality(self) -> LocalityPlan:
        return self._plan


class RemoteZone:
    """The other zone as this zone sees it: its Plan and Revisions (what the driver wrote
    there), its name, and its ZoneIngress's advertised address and port."""

    def __init__(
        self, zone: str, plan: Plan, revisions: Revisions, address: str, port: int
    ) -> None:
        self.zone = zone
        self.plan = plan
        self.revisions = revisions
        self.address = address
        self.port = port

    def dataplane(self, index: int) -> Dataplane:
        dataplane = from_document(self.revisions.document(index))
        assert isinstance(dataplane, Dataplane)
        return stamp_zone(dataplane, self.zone, strict=False)

    def ingress(self, mesh: Mesh, indices: Iterable[int]) -> ZoneIngress:
        """Its ingress as global sends it, listing the services of the Dataplanes ``indices``."""
        dataplanes = [self.dataplane(i) for i in indices]
        return ZoneIngress(
            name="ingress",
            zone=self.zone,
            networking=ZoneIngressNetworking(
                address=self.address,
                port=self.port,
                advertised_address=self.address,
                advertised_port=self.port,
            ),
            available_services=from_scratch([mesh], dataplanes, (), self.zone),
        )


class ZoneReference(Reference):
    def __init__(self, plan: Plan, revisions: Revisions, *, zone: str, remote: RemoteZone) -> None:
        self.remote = remote
        super().__init__(plan, revisions, zone=zone)

    def _view(self, mesh: Mesh) -> RefView:
        view = ZoneRefView(mesh, self._dataplanes, self.zone)
        self._mesh = mesh
        ingress = self.remote.ingress(mesh, range(self.remote.plan.count))
        for service, endpoints in self._remote_endpoints(ingress).items():
            view.put_group(service, _REMOTE, endpoints)
        return view

    def _remote_endpoints(self, ingress: ZoneIngress) -> dict[str, tuple[Endpoint, ...]]:
        at = (self.remote.address, self.remote.port)
        return {
            service: endpoints
            for (mesh, service), endpoints in contribution(ingress, at).items()
            if mesh == self._mesh.name
        }

    def apply_remote(self, change: Change) -> Prediction:
        """Record ``change`` of the other zone (already in its revisions): the changed
        service's entries of its ingress, and what reaches this zone's consumers."""
        remote = self.remote
        service = remote.plan.service_of[change.proxy]
        ingress = remote.ingress(self._mesh, remote.plan.instances_of(service))
        [(name, endpoints)] = self._remote_endpoints(ingress).items()
        self.view.put_group(name, _REMOTE, endpoints)
        return self.endpoints_changed(name)
