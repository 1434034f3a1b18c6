"""A proxy's outbounds: where they are (its explicit outbounds, and with transparent
proxying its VIP outbounds) and what its policies make of each one's listener and cluster.

The listener and cluster built here are keyed and shared between proxies by the engine
(``kuma/xds/engine/shared.py``); ``generate_proxy`` builds them per proxy from scratch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from kuma.policies import (
    ProxyPolicies,
    apply_outbound_cluster,
    apply_outbound_listener,
    plan_outbound,
)
from kuma.policies.decoded import DecodedFilters, add_filter
from kuma.policies.plugin import OutboundPlan
from kuma.resources.model import Dataplane

from ._pb import Message
from .clusters import service_cluster, service_cluster_body, set_destination
from .dataplane import is_transparent, overlaps
from .destination import Destination, destination_cluster_name
from .external_vips import external_vip_outbounds
from .listeners import outbound_filter, outbound_listener_shell

if TYPE_CHECKING:
    from .proxy import MeshView

#: Kuma's ``dnsServer.serviceVipPort``: the port of every service's virtual IP.
DEFAULT_VIP_PORT = 80


def _uses_inbound(dataplane: Dataplane, address: str, port: int) -> bool:
    """Kuma's ``UsesInboundInterface``: an inbound (or its application) at address:port."""
    networking = dataplane.networking
    assert networking is not None
    for inbound in networking.inbound:
        if port == inbound.port and overlaps(address, inbound.effective_address(networking)):
            return True
        if port == inbound.effective_service_port and overlaps(
            address, inbound.effective_service_address(networking)
        ):
            return True
    return False


def outbounds_of(
    dataplane: Dataplane, view: MeshView, vip_port: int = DEFAULT_VIP_PORT
) -> list[tuple[str, int, Destination]]:
    """(address, port, destination) of every outbound of the proxy, VIP outbounds first.
    A VIP outbound reaches its whole service; an explicit one the subset its tags select."""
    networking = dataplane.networking
    if networking is None:
        return []
    result: list[tuple[str, int, Destination]] = []
    vips: set[str] = set()
    tp = networking.transparent_proxying
    if tp is not None and is_transparent(dataplane):
        reachable = set(tp.reachable_services)
        for service in sorted(set(view.services())):
            vip = view.vip(service)
            if vip is None:
                continue
            vips.add(vip)
            if reachable and service not in reachable:
                continue
            if _uses_inbound(dataplane, vip, vip_port):
                continue
            result.append((vip, vip_port, Destination(service)))
        entries = view.external_vips()
        vips.update(entry.address for entry in entries)
        for address, port, service in external_vip_outbounds(entries, vip_port):
            if reachable and service not in reachable:
                continue
            if _uses_inbound(dataplane, address, port):
                continue
            result.append((address, port, Destination(service)))
    for outbound in networking.outbound:
        address = outbound.effective_address
        if outbound.service and address not in vips:
            result.append((address, outbound.port, Destination.of(outbound.tags)))
    return result


class OutboundPart(NamedTuple):
    """One outbound listener of a proxy, as the shared builders take it: the listener is
    ``outbound_listener(address, port, destination, view.protocol(destination.service),
    bind_to_port=...)``; each distinct destination adds ``service_cluster`` and
    ``destination_load_assignment``. All three can be shared between proxies."""

    address: str
    port: int
    destination: Destination
    bind_to_port: bool


#: Outbound network filters built before, by (destination, protocol, caller tags), kept
#: decoded: a listener copies one instead of building it, and the policy plugins edit the copy
#: before it is packed once (a policy change rebuilds every outbound listener it shapes).
_FILTERS: dict[tuple[Destination, str, str], tuple[str, Message]] = {}
#: Entries kept before the cache starts over (about one per destination of the meshes; more
#: only where caller tags vary per proxy).
_MAX_FILTERS = 4096


def _outbound_filter(
    destination: Destination, protocol: str, caller_tags: str
) -> tuple[str, Message]:
    key = (destination, protocol, caller_tags)
    found = _FILTERS.get(key)
    if found is None:
        if len(_FILTERS) >= _MAX_FILTERS:
            _FILTERS.clear()
        found = _FILTERS[key] = outbound_filter(destination, protocol, caller_tags)
    return found


def policy_outbound_listener(
    address: str,
    port: int,
    destination: Destination,
    protocol: str,
    policies: ProxyPolicies,
    *,
    bind_to_port: bool = True,
    plan: OutboundPlan | None = None,
    caller_tags: str = "",
) -> listener_pb2.Listener:
    """An outbound listener with the proxy's policies for its service applied (Kuma applies
    a service's rules to the outbounds of its subsets too); ``plan``: its routes, when a
    MeshHTTPRoute or MeshTCPRoute routes it (``outbound_plan``); ``caller_tags``: see
    ``ProxyParts``. The same as ``outbound_listener`` changed by the plan and the plugins."""
    listener, chain = outbound_listener_shell(address, port, destination, bind_to_port)
    name, base = _outbound_filter(destination, protocol, caller_tags)
    config = type(base)()
    config.CopyFrom(base)
    with DecodedFilters():
        add_filter(chain, name, config)
        if plan is not None:
            plan.rewrite(listener, destination_cluster_name)
        if policies:
            apply_outbound_listener(listener, policies, destination.service, protocol)
    return listener


def outbound_plan(
    policies: ProxyPolicies, destination: Destination, protocol: str, protocol_of: Any
) -> tuple[OutboundPlan | None, tuple[Destination, ...]]:
    """How the proxy's route policies route an outbound to ``destination`` (None: one route
    to it) and the destinations its listener then sends to (each needs a cluster and a
    ClusterLoadAssignment)."""
    plan = plan_outbound(policies, destination.tags, protocol, protocol_of) if policies else None
    if plan is None:
        return None, (destination,)
    return plan, tuple(Destination(service, subset) for service, subset in plan.backends)


#: (protocol, the cluster part of a policy fingerprint) -> a service cluster body with those
#: policies applied (``set_destination`` not yet called): a policy change that gives a new
#: conf to many services runs the plugins once per protocol instead of once per service.
_CLUSTER_BODIES: dict[tuple[str, bytes], cluster_pb2.Cluster] = {}
#: Entries kept before the cache starts over (a few per distinct policy set).
_MAX_CLUSTER_BODIES = 1024


def policy_service_cluster(
    destination: Destination,
    protocol: str,
    policies: ProxyPolicies,
    tls_mesh: str | None = None,
    fingerprint: bytes | None = None,
) -> cluster_pb2.Cluster:
    """A destination's cluster with the proxy's policies for its service applied.

    ``fingerprint``: the cluster part of ``outbound_fingerprint(policies, service)``. Given,
    the body is copied from the one built for the same (protocol, fingerprint) and only the
    destination's fields are set: the cluster plugins read nothing of a cluster's destination
    but its service's conf, which the fingerprint stands for (``PolicyPlugin.outbound_cluster``)."""
    if fingerprint is None or not policies:
        cluster = service_cluster(destination, protocol, tls_mesh)
        if policies:
            apply_outbound_cluster(cluster, policies, destination.service, protocol)
        return cluster
    key = (protocol, fingerprint)
    body = _CLUSTER_BODIES.get(key)
    if body is None:
        if len(_CLUSTER_BODIES) >= _MAX_CLUSTER_BODIES:
            _CLUSTER_BODIES.clear()
        body = _CLUSTER_BODIES[key] = service_cluster_body(protocol)
        apply_outbound_cluster(body, policies, destination.service, protocol)
    cluster = cluster_pb2.Cluster()
    cluster.CopyFrom(body)
    set_destination(cluster, destination, tls_mesh)
    return cluster
