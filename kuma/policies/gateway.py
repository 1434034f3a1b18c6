"""Policies on Kuma's builtin gateway: each kind's gateway branch (Kuma's ``applyToGateway`` /
``applyToGateways`` of its plugin), applied to the gateway's listeners, route configurations and
clusters as the builtin gateway builds them (``kuma/xds/gateway``).

Matching is the sidecars' (:func:`kuma.policies.matching.resolve` with the MeshGateway): a
policy selects listeners by the merged tags of the Dataplane's gateway, the MeshGateway and the
listener (``Mesh``/``MeshSubset`` with ``proxyTypes`` allowing ``Gateway``, ``MeshService`` by
the gateway's service, ``MeshGateway`` by name and listener tags). Per listener port the kind
has ``from`` rules (``KindPolicies.from_rules``) and ``to`` rules
(``KindPolicies.listener_to_rules``: Kuma's ``GatewayRules.ToRules.ByListener``).

A kind takes part by registering a :class:`GatewayPlugin` in its own module; hooks run in Kuma's
plugin order, only for kinds that matched the gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from kuma.resources.policy import PolicyKind

from .matching import (
    RULE_MATCHES_HASH_TAG,
    HostKey,
    InboundKey,
    KindPolicies,
    ProxyPolicies,
)
from .rules import Element, Rules

T = TypeVar("T")

#: Gateway listener protocols of the HTTP family (the others proxy TCP).
HTTP_LISTENERS = ("HTTP", "HTTPS")


class Reach(NamedTuple):
    """How a backend's cluster is reached: the listener (host key: ``hostname`` is ``*`` on
    HTTP and TCP ports, as Kuma keys them) and its protocol, the service and the service's
    protocol."""

    host: HostKey
    listener_protocol: str
    service: str
    protocol: str

    @property
    def port(self) -> InboundKey:
        return self.host[0], self.host[1]


class GatewayPlugin:
    """Base of a kind's gateway branch; every hook does nothing unless overridden."""

    kind: PolicyKind

    def listener(
        self,
        listener: listener_pb2.Listener,
        policies: KindPolicies,
        port: InboundKey,
        protocol: str,
    ) -> None:
        """The Envoy listener of one gateway port (``protocol``: the MeshGateway's, e.g.
        ``HTTPS``)."""

    def route_configuration(
        self,
        config: route_pb2.RouteConfiguration,
        policies: KindPolicies,
        port: InboundKey,
        services: Sequence[str],
    ) -> None:
        """One route configuration of an HTTP(S) port (``services``: those the port's routes
        reach, in order found)."""

    def cluster(self, cluster: cluster_pb2.Cluster, policies: KindPolicies, at: Reach) -> None:
        """A backend's cluster, for the listener whose routes reach it."""


GATEWAY_PLUGINS: list[GatewayPlugin] = []


def register_gateway_plugin(plugin: GatewayPlugin) -> GatewayPlugin:
    GATEWAY_PLUGINS.append(plugin)
    GATEWAY_PLUGINS.sort(key=lambda p: p.kind.order)
    return plugin


def gateway_kinds() -> tuple[str, ...]:
    """The kinds with a gateway branch (a change of one re-assembles the mesh's gateways)."""
    return tuple(plugin.kind.name for plugin in GATEWAY_PLUGINS)


def listener_rules(policies: KindPolicies, port: InboundKey) -> Rules | None:
    """The ``to`` rules of the policies selecting a listener of ``port`` (None: none does)."""
    return (policies.listener_to_rules or {}).get(port)


def host_rules(policies: KindPolicies, host: HostKey) -> Rules | None:
    """The ``to`` rules of the policies selecting the listener ``host`` (None: none does)."""
    return (policies.host_to_rules or {}).get(host)


def route_element(route: route_pb2.Route) -> Element:
    return {RULE_MATCHES_HASH_TAG: route.name}


def per_route(
    config: route_pb2.RouteConfiguration,
    policies: KindPolicies,
    port: InboundKey,
    build: Callable[[Any], T | None],
) -> Iterator[tuple[route_pb2.Route, T]]:
    """Each route of a gateway port's route configuration with what ``build`` makes of the
    kind's conf for it, or else of the port's conf for every route (built once); routes with
    neither are left out, as are all when no policy of the kind selects the port."""
    rules = listener_rules(policies, port)
    if rules is None:
        return
    common = build(policies.conf(rules.compute({})))
    for host in config.virtual_hosts:
        for route in host.routes:
            built = build(policies.conf(rules.compute(route_element(route)))) or common
            if built is not None:
                yield route, built


def apply_listener(
    listener: listener_pb2.Listener, policies: ProxyPolicies, port: InboundKey, protocol: str
) -> None:
    for plugin in GATEWAY_PLUGINS:
        matched = policies.get(plugin.kind.name)
        if matched is not None:
            plugin.listener(listener, matched, port, protocol)


def apply_route_configuration(
    config: route_pb2.RouteConfiguration,
    policies: ProxyPolicies,
    port: InboundKey,
    services: Sequence[str],
) -> None:
    for plugin in GATEWAY_PLUGINS:
        matched = policies.get(plugin.kind.name)
        if matched is not None:
            plugin.route_configuration(config, matched, port, services)


def apply_cluster(
    cluster: cluster_pb2.Cluster,
    policies: ProxyPolicies,
    host: HostKey,
    listener_protocol: str,
    service: str,
    protocol: str,
) -> None:
    at = Reach(host, listener_protocol, service, protocol)
    for plugin in GATEWAY_PLUGINS:
        matched = policies.get(plugin.kind.name)
        if matched is not None:
            plugin.cluster(cluster, matched, at)
