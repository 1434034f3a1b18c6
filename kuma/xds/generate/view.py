"""``StaticMeshView``: an in-memory ``MeshView`` computed from a list of Dataplanes.

It is the reference the engine's indexes are checked against: simple, from scratch, no
caching cleverness.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from kuma.resources.model import Dataplane, ExternalService, Mesh

from .cross_zone import NO_REMOTE, LocalityPlan, RemoteEndpoints, locality_plan, through_egresses
from .endpoints import Endpoint, endpoints_of, service_protocol
from .external import ExternalEndpoint, external_protocol, resolve_endpoints
from .external_vips import ExternalVip, external_vip_entries
from .via_egress import EgressAddress


def services_of(dataplane: Dataplane) -> list[str]:
    """The services a Dataplane contributes to its mesh's service list (Kuma's VIP view):
    those of its inbounds not in state Ignored. Gateways contribute none."""
    networking = dataplane.networking
    if networking is None or networking.gateway is not None:
        return []
    return [i.service for i in networking.inbound if i.service and i.state != "Ignored"]


class StaticMeshView:
    """A mesh as of one moment: its Mesh resource, Dataplanes, virtual IPs, ExternalServices,
    the values of its Secrets (by name, for their DataSources), the zone's egresses and the
    other zones' ingresses (``remote``, seen from ``local_zone``; ``remote_services``: the
    services of this mesh they list, which exist here without a local member)."""

    def __init__(
        self,
        dataplanes: Iterable[Dataplane],
        mesh: Mesh | None = None,
        vips: Mapping[str, str] | None = None,
        external_services: Iterable[ExternalService] = (),
        secrets: Mapping[str, bytes] | None = None,
        zone_egresses: Sequence[EgressAddress] = (),
        host_vips: Mapping[str, str] | None = None,
        remote: RemoteEndpoints = NO_REMOTE,
        local_zone: str = "",
        remote_services: Iterable[str] = (),
    ) -> None:
        self._mesh = mesh
        self._egresses = tuple(sorted(set(zone_egresses)))
        self._vips = dict(vips or {})
        by_service: dict[str, dict[str, ExternalService]] = {}
        mine = [r for r in external_services if mesh is None or r.mesh == mesh.name]
        for resource in mine:
            by_service.setdefault(resource.service, {})[resource.name] = resource
        name = mesh.name if mesh is not None else ""
        self._external = {
            service: resolve_endpoints(members, secrets or {}, name)
            for service, members in by_service.items()
        }
        self._plan = locality_plan(mesh, local_zone, remote.instances, zone_egresses)
        self._endpoints: dict[str, list[Endpoint]] = {}
        self._services: set[str] = set(remote_services)
        for dataplane in dataplanes:
            if mesh is not None and dataplane.mesh != mesh.name:
                continue
            self._services.update(services_of(dataplane))
            for service, endpoint in endpoints_of(dataplane):
                self._endpoints.setdefault(service, []).append(endpoint)
        if mesh is not None and self._plan.remote:
            for (of_mesh, service), endpoints in remote.by_service.items():
                if of_mesh != mesh.name:
                    continue
                if self._plan.egresses is not None:
                    endpoints = through_egresses(endpoints, self._plan.egresses)
                self._endpoints.setdefault(service, []).extend(endpoints)
        for found in self._endpoints.values():
            found.sort(key=Endpoint.sort_key)
        self._external_vips = external_vip_entries(
            mine, self._vips, host_vips or {}, self._services
        )

    @property
    def mesh(self) -> Mesh | None:
        return self._mesh

    def endpoints(self, service: str) -> Sequence[Endpoint]:
        return tuple(self._endpoints.get(service, ()))

    def protocol(self, service: str) -> str:
        external = self._external.get(service)
        if external:
            return external_protocol(external)
        return service_protocol(self._endpoints.get(service, ()))

    def services(self) -> Iterable[str]:
        return sorted(self._services)

    def vip(self, service: str) -> str | None:
        return self._vips.get(service)

    def external(self, service: str) -> Sequence[ExternalEndpoint]:
        return self._external.get(service, ())

    def external_vips(self) -> Sequence[ExternalVip]:
        return self._external_vips

    def zone_egresses(self) -> Sequence[EgressAddress]:
        return self._egresses

    def locality(self) -> LocalityPlan:
        return self._plan
