"""Policy events (every registered targetRef kind): the mesh's policies, and the proxies a
change concerns.

The proxies a policy selected when they were last assembled are found through the index's
selection slot (key ``(kind, mesh, name)``, filled from ``Assembly.selections``). The proxies
its new version selects are found from its top-level targetRef: the Dataplanes carrying the
tags it names (``MeshState.with_tags``: a MeshService policy looks at that service's
Dataplanes only), checked with Kuma's matching; ``Mesh`` (and a MeshSubset without tags)
concerns the whole mesh.

A change that turns the mesh's need of the callers' tags on or off
(``kuma.policies.caller_tags``) concerns every proxy of the mesh: all their HTTP outbound
listeners gain or lose the ``x-kuma-tags`` header.
"""

from __future__ import annotations

from collections.abc import Hashable

from kuma.policies import selects
from kuma.policies.caller_tags import may_need_caller_tags, needs_caller_tags
from kuma.resources.model import (
    MESH_GATEWAY,
    MESH_HTTP_ROUTE,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    SERVICE_TAG,
    Policy,
)
from kuma.store import Operation, ResourceEvent
from kuma.xds.gateway.selection import gateway_key
from kuma.xds.node_id import ProxyId

from ..invalidation import Invalidation
from ..mesh_state import Meshes, MeshState
from ..zone_ingress import kind_key


def selection_key(policy: Policy) -> Hashable:
    return (policy.TYPE, policy.mesh, policy.name)


def _newly_selected(mesh: MeshState, policy: Policy, invalidation: Invalidation) -> None:
    ref = policy.spec.target_ref
    if ref.kind == MESH_HTTP_ROUTE:
        invalidation.meshes.add(mesh.name)  # resolved through the route: rare, mesh-wide
        return
    if ref.kind == MESH_GATEWAY:
        # The proxies that MeshGateway serves (kuma/xds/gateway): its selection key.
        invalidation.selections.add(gateway_key(mesh.name, ref.name))
        return
    tags: list[tuple[str, str]] = []
    if ref.kind in (MESH_SERVICE, MESH_SERVICE_SUBSET):
        tags.append((SERVICE_TAG, ref.name))
    tags.extend((k, v) for k, v in ref.tags.items() if v != "*")
    for name in mesh.with_tags(tags):
        dataplane = mesh.dataplanes[name]
        if selects(policy, dataplane):
            invalidation.dataplanes.add(ProxyId(mesh.name, name))


class PolicyHandler:
    def __init__(self, resource_type: str) -> None:
        self.resource_type = resource_type

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        policy = event.resource
        assert isinstance(policy, Policy)
        mesh = meshes[policy.mesh]
        tagged = may_need_caller_tags(policy.TYPE)
        needed = tagged and needs_caller_tags(mesh.policies_by_kind())
        if event.operation is Operation.DELETE:
            mesh.remove_policy(policy.TYPE, policy.name)
        else:
            if mesh.policy(policy.TYPE, policy.name) == policy:
                return
            mesh.put_policy(policy)
            _newly_selected(mesh, policy, invalidation)
        invalidation.selections.add(selection_key(policy))
        # Proxies that read every policy of the kind in the mesh (a ZoneIngress: routes' subsets).
        invalidation.selections.add(kind_key(policy.TYPE, policy.mesh))
        if tagged and needs_caller_tags(mesh.policies_by_kind()) != needed:
            invalidation.meshes.add(mesh.name)
