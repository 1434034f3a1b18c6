"""A proxy's inbounds: which get a listener and a cluster, how each is secured (mesh mTLS
and the permissions that apply), and those two resources with the proxy's policies applied.

``proxy_parts`` builds them for generation from scratch; the engine reuses what it built
while the inputs stay (``kuma/xds/engine/proxy_memo.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from kuma.policies import ProxyPolicies, apply_inbound
from kuma.policies.matching import InboundKey
from kuma.resources.model import Dataplane, Inbound, Mesh
from kuma.resources.mtls import enabled_backend

from .clusters import inbound_cluster
from .dataplane import inbound_protocol
from .endpoints import SERVICELESS_PORT
from .listeners import InboundMtls, inbound_listener
from .rbac import DENY_ALL, PermissionRule

if TYPE_CHECKING:
    from .proxy import MeshView

#: The permission rules of one inbound of a proxy (MeshTrafficPermission); empty when none.
PermissionLookup = Callable[[Dataplane, Inbound], Sequence[PermissionRule]]


def inbound_mtls(
    mesh: Mesh | None,
    dataplane: Dataplane,
    inbound: Inbound,
    permissions: PermissionLookup | None,
) -> InboundMtls | None:
    """How an inbound is secured; None without mTLS. With mTLS on and no permission for the
    inbound, every caller is denied (Kuma's rule)."""
    backend = enabled_backend(mesh)
    if backend is None or mesh is None:
        return None
    rules = permissions(dataplane, inbound) if permissions is not None else ()
    return InboundMtls(mesh.name, backend.mode, tuple(rules) or DENY_ALL)


class InboundPart(NamedTuple):
    """One inbound that gets a listener and a cluster, and how it is secured."""

    inbound: Inbound
    #: What policies' ``from`` rules match it by (its effective address and port).
    key: InboundKey
    mtls: InboundMtls | None


def inbound_parts(
    dataplane: Dataplane, view: MeshView, permissions: PermissionLookup | None = None
) -> list[InboundPart]:
    """The inbounds that get a listener and a cluster: none for a gateway, none for Kuma's
    "serviceless" port."""
    networking = dataplane.networking
    if networking is None or networking.gateway is not None:
        return []
    return [
        InboundPart(
            inbound,
            (inbound.effective_address(networking), inbound.port),
            inbound_mtls(view.mesh, dataplane, inbound, permissions),
        )
        for inbound in networking.inbound
        if inbound.port != SERVICELESS_PORT
    ]


def inbound_resources(
    dataplane: Dataplane, part: InboundPart, policies: ProxyPolicies
) -> tuple[listener_pb2.Listener, cluster_pb2.Cluster]:
    """An inbound's listener and cluster with the proxy's policies applied: a function of
    the Dataplane, ``part.mtls`` and what ``inbound_policy_key`` captures of the policies."""
    listener = inbound_listener(dataplane, part.inbound, part.mtls)
    cluster = inbound_cluster(dataplane, part.inbound)
    if policies:
        apply_inbound(listener, cluster, policies, part.key, inbound_protocol(part.inbound))
    return listener, cluster
