"""Policy events that concern this zone's egresses: a new or changed policy of a kind a
ZoneEgress applies (``kuma.policies.egress``) re-assembles the egresses only when it selects
an ExternalService of a mesh routing through them (``egress_policy_key``).

The other half, a policy the egress read before (now changed so that it selects nothing, or
deleted), is the policy's own selection key, which the egress registered for every policy
it read (``engine/zone_egress.py``) and ``PolicyHandler`` adds on every change. Registered
ahead of ``PolicyHandler``: the mesh still holds the policy's previous version, so a put of
an unchanged policy costs nothing.
"""

from __future__ import annotations

from kuma.policies.egress import selects_any
from kuma.resources.model import Policy
from kuma.store import Operation, ResourceEvent
from kuma.xds.generate.via_egress import routes_through_egress

from ..invalidation import Invalidation
from ..mesh_state import Meshes
from ..zone_egress import egress_policy_key


class EgressPolicyHandler:
    def __init__(self, resource_type: str) -> None:
        self.resource_type = resource_type

    def handle(self, event: ResourceEvent, meshes: Meshes, invalidation: Invalidation) -> None:
        policy = event.resource
        assert isinstance(policy, Policy)
        if event.operation is Operation.DELETE:
            return  # what it selected before: its selection key (see above)
        mesh = meshes.get(policy.mesh)
        if mesh is None or not routes_through_egress(mesh.mesh):
            return  # no egress carries the mesh; turning routing on is a Mesh change
        if mesh.policy(policy.TYPE, policy.name) == policy:
            return
        if selects_any(policy, mesh.externals.services()):
            invalidation.selections.add(egress_policy_key(mesh.name))
