"""What kuma-cp should serve each sidecar, computed from scratch by the driver.

The reference is ``kuma.xds.generate.generate_proxy`` (the from-scratch generator the engine's
invariant test holds the engine to) over a simple mesh view kept here, not the engine's own
indexes: a sidecar that converged to the reference got what a full regeneration would give.
Versions are the content hashes kuma-cp uses (``kuma.xds.snapshot.versioned``).

A change (:class:`~kuma.load.mesh.Change`) updates the view, predicts the new version of the
changed service's ClusterLoadAssignment, updates every consumer's expected config and
regenerates the changed proxy itself. A policy written (:meth:`Reference.apply_policy`) is
matched against every proxy again; the proxies it selected before or selects now are
regenerated, and every other proxy's expected config stays as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from kuma.cp.vips import allocate
from kuma.multizone.zone_tag import stamp_zone
from kuma.policies import EMPTY, ProxyPolicies, resolve
from kuma.resources import Dataplane, Mesh, from_document
from kuma.resources.model import Policy
from kuma.xds.generate import (
    Endpoint,
    endpoints_of,
    generate_proxy,
    service_protocol,
    services_of,
)
from kuma.xds.generate.cross_zone import LOCAL_ONLY, LocalityPlan
from kuma.xds.generate.destination import Destination, destination_load_assignment
from kuma.xds.generate.external import ExternalEndpoint
from kuma.xds.generate.external_vips import ExternalVip
from kuma.xds.generate.via_egress import EgressAddress
from kuma.xds.snapshot import versioned

from .mesh import Change, Plan, Revisions
from .wire import CDS, EDS, TYPE_INDEX, Digest, digest_of, entry_hash

Config = dict[int, dict[str, str]]


class RefView:
    """A ``MeshView`` over a dict of endpoints per service and Dataplane; VIPs fixed at start."""

    def __init__(self, mesh: Mesh, dataplanes: Iterable[Dataplane]) -> None:
        self._mesh = mesh
        self._by_service: dict[str, dict[str, tuple[Endpoint, ...]]] = {}
        self._sorted: dict[str, tuple[Endpoint, ...]] = {}
        members: set[str] = set()
        for dataplane in dataplanes:
            members.update(services_of(dataplane))
            self.put(dataplane)
        self._services = sorted(members)
        # What kuma-cp's allocator stores for a mesh whose services all exist from the start.
        self._vips = allocate(mesh.name, {}, members)

    def put(self, dataplane: Dataplane) -> None:
        grouped: dict[str, list[Endpoint]] = {}
        for service, endpoint in endpoints_of(dataplane):
            grouped.setdefault(service, []).append(endpoint)
        for service, found in grouped.items():
            self.put_group(service, dataplane.name, tuple(found))

    def put_group(self, service: str, key: str, endpoints: tuple[Endpoint, ...]) -> None:
        """``service``'s endpoints that ``key`` contributes (a Dataplane's name, or another
        zone's ingress: kuma/load/zone_reference.py), replacing what it contributed before."""
        self._by_service.setdefault(service, {})[key] = endpoints
        self._sorted.pop(service, None)

    @property
    def mesh(self) -> Mesh | None:
        return self._mesh

    def endpoints(self, service: str) -> Sequence[Endpoint]:
        cached = self._sorted.get(service)
        if cached is None:
            groups = self._by_service.get(service, {}).values()
            cached = tuple(sorted((e for g in groups for e in g), key=Endpoint.sort_key))
            self._sorted[service] = cached
        return cached

    def protocol(self, service: str) -> str:
        return service_protocol(self.endpoints(service))

    def services(self) -> Iterable[str]:
        return self._services

    def vip(self, service: str) -> str | None:
        return self._vips.get(service)

    def external(self, service: str) -> Sequence[ExternalEndpoint]:
        return ()  # kuma-load generates no ExternalServices

    def external_vips(self) -> Sequence[ExternalVip]:
        return ()

    def zone_egresses(self) -> Sequence[EgressAddress]:
        return ()

    def locality(self) -> LocalityPlan:
        return LOCAL_ONLY  # one zone, no ingresses


def _always(service: str) -> bool:
    return True


def _selected_by(resolved: ProxyPolicies, policy: Policy) -> bool:
    kind = resolved.get(policy.TYPE)
    return kind is not None and any(p.name == policy.name for p in kind.policies)


class Prediction(msgspec.Struct, frozen=True):
    """What one change should deliver: ``name`` of type ``type_index`` at ``version`` to
    ``affected`` (the consumers of the changed service)."""

    type_index: int
    name: str
    version: str
    affected: tuple[int, ...]


class Reference:
    def __init__(
        self, plan: Plan, revisions: Revisions, *, admin_port: int = 9901, zone: str = ""
    ) -> None:
        self.plan = plan
        self.revisions = revisions
        self.admin_port = admin_port
        #: A zone control plane's name: it stamps ``kuma.io/zone`` on every inbound it serves.
        self.zone = zone
        mesh = from_document(plan.mesh_document())
        assert isinstance(mesh, Mesh)
        policies: list[Policy] = []
        for document in plan.policy_documents():
            policy = from_document(document)
            assert isinstance(policy, Policy)
            policies.append(policy)
        self._policies: dict[str, list[Policy]] = {}
        for policy in policies:
            self._policies.setdefault(policy.TYPE, []).append(policy)
        self._dataplanes = [self._dataplane(i) for i in range(plan.count)]
        self._resolved: list[ProxyPolicies] = [self._matched(d) for d in self._dataplanes]
        self.view = self._view(mesh)
        self.configs: list[Config] = [self._generate(i) for i in range(plan.count)]
        self.digests: list[Digest] = [digest_of(c) for c in self.configs]
        #: ClusterLoadAssignment name → proxies that hold it.
        self._consumers: dict[str, set[int]] = {}
        for index, config in enumerate(self.configs):
            for name in config.get(EDS, {}):
                self._consumers.setdefault(name, set()).add(index)

    def _view(self, mesh: Mesh) -> RefView:
        return RefView(mesh, self._dataplanes)

    def _dataplane(self, index: int) -> Dataplane:
        dataplane = from_document(self.revisions.document(index))
        assert isinstance(dataplane, Dataplane)
        return stamp_zone(dataplane, self.zone, strict=False)

    def _matched(self, dataplane: Dataplane) -> ProxyPolicies:
        return resolve(dataplane, self._policies) if self._policies else EMPTY

    def _generate(self, index: int) -> Config:
        dataplane = self._dataplanes[index]
        generated = generate_proxy(
            dataplane,
            self.view,
            self.admin_port,
            policies=self._resolved[index],
            # PERMISSIVE: once every proxy holds its certificate kuma-cp calls every service
            # ready, so what a converged mesh serves originates mTLS everywhere.
            tls_ready=_always,
        )
        return {
            TYPE_INDEX[type_url]: {
                name: versioned(type_url, name, message).version
                for name, message in by_name.items()
            }
            for type_url, by_name in generated.items()
            if by_name
        }

    def apply(self, change: Change) -> Prediction:
        """Record ``change`` (already in ``revisions``) and predict what it delivers."""
        index = change.proxy
        dataplane = self._dataplanes[index] = self._dataplane(index)
        self._resolved[index] = self._matched(dataplane)
        self.view.put(dataplane)
        service = next(s for s, _ in endpoints_of(dataplane))
        prediction = self.endpoints_changed(service)
        self.configs[index] = self._generate(index)
        self.digests[index] = digest_of(self.configs[index])
        return prediction

    def endpoints_changed(self, service: str) -> Prediction:
        """``service``'s endpoints changed in the view: its consumers' new
        ClusterLoadAssignment, as the generator builds it (the mesh's locality plan)."""
        message = destination_load_assignment(
            Destination(service), self.view.endpoints(service), self.view.locality()
        )
        name = message.cluster_name
        version = versioned(
            "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", name, message
        ).version
        affected = self._consumers.get(name, set())
        for consumer in affected:
            self._set(consumer, EDS, name, version)
        return Prediction(EDS, name, version, tuple(sorted(affected)))

    def apply_policy(self, document: dict[str, Any]) -> Prediction:
        """Record a policy created or changed by the driver; predict what it delivers: the
        first Cluster that changed on every affected proxy, at its new version (one version:
        shared clusters are the same bytes on every proxy whose policies shape them alike;
        otherwise the name alone is predicted)."""
        policy = from_document(document)
        assert isinstance(policy, Policy)
        same_kind = [p for p in self._policies.get(policy.TYPE, []) if p.name != policy.name]
        self._policies[policy.TYPE] = [*same_kind, policy]
        affected: list[int] = []
        for index, dataplane in enumerate(self._dataplanes):
            before = _selected_by(self._resolved[index], policy)
            self._resolved[index] = self._matched(dataplane)
            if before or _selected_by(self._resolved[index], policy):
                affected.append(index)
        changed: dict[str, set[str]] | None = None
        for index in affected:
            old = self.configs[index].get(CDS, {})
            self.configs[index] = self._generate(index)
            self.digests[index] = digest_of(self.configs[index])
            new = self.configs[index].get(CDS, {})
            here = {name: {version} for name, version in new.items() if old.get(name) != version}
            if changed is None:
                changed = here
            else:
                changed = {n: v | here[n] for n, v in changed.items() if n in here}
        if not changed:
            raise ValueError(f"{policy.TYPE} {policy.name} changes no cluster of what it selects")
        name = min(changed)
        versions = changed[name]
        version = next(iter(versions)) if len(versions) == 1 else ""
        return Prediction(CDS, name, version, tuple(affected))

    def _set(self, index: int, type_index: int, name: str, version: str) -> None:
        bucket = self.configs[index].setdefault(type_index, {})
        value, count = self.digests[index]
        old = bucket.get(name)
        if old is not None:
            value ^= entry_hash(type_index, name, old)
            count -= 1
        bucket[name] = version
        self.digests[index] = (value ^ entry_hash(type_index, name, version), count + 1)
