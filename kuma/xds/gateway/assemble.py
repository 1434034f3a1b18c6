"""The engine's seam for builtin gateways: :func:`with_gateway` adds to a gateway proxy's
assembly what its MeshGateway gives it (the sidecar assembly is left as it is).

The proxy is then re-assembled when its MeshGateway changes (selection key
:func:`gateway_key`, also what a MeshHTTPRoute targeting that MeshGateway touches), when one of
its routes changes (the routes' own selection keys), and when the inputs of a backend service
change (it consumes the service like a sidecar's outbound); a backend's endpoints are patched
into its ClusterLoadAssignments, which are shared by every gateway with the same listener
tags (``Destination.identity``).
"""

from __future__ import annotations

from collections.abc import Hashable

from kuma.policies.caller_tags import caller_tags_header
from kuma.policies.meshhttproute.api import MeshHTTPRoute
from kuma.policies.meshtcproute import MeshTCPRoute
from kuma.resources import Dataplane
from kuma.resources.model import GatewayListener
from kuma.xds import types
from kuma.xds.engine.assemble import Assembly, _resource_name
from kuma.xds.engine.interner import Interner
from kuma.xds.engine.mesh_state import MeshState
from kuma.xds.engine.shared import SharedResources
from kuma.xds.engine.watches import ProxyResources
from kuma.xds.generate._pb import Message
from kuma.xds.generate.destination import Destination

from .hostnames import exactness_key
from .resources import (
    ClusterNames,
    gateway_cluster,
    http_listener,
    route_configuration,
    tcp_listener,
)
from .resources import route_config_name as _route_config_name
from .routes import VirtualHost, targeting, tcp_backends, virtual_hosts
from .selection import gateway_key, gateway_of

MESH_HTTP_ROUTE = "MeshHTTPRoute"
MESH_TCP_ROUTE = "MeshTCPRoute"


def with_gateway(
    assembly: Assembly,
    dataplane: Dataplane,
    mesh: MeshState,
    interner: Interner,
    shared: SharedResources,
) -> Assembly:
    gateway = gateway_of(dataplane, mesh)
    if gateway is None or gateway.conf is None:
        return assembly
    assert dataplane.networking is not None
    assert dataplane.networking.gateway is not None
    policies = mesh.policies_by_kind()
    routes = targeting(MeshHTTPRoute, gateway, policies.get(MESH_HTTP_ROUTE, ()))
    tcp_routes = targeting(MeshTCPRoute, gateway, policies.get(MESH_TCP_ROUTE, ()))
    selections: set[Hashable] = set(assembly.selections)
    selections.add(gateway_key(mesh.name, gateway.name))
    selections.update((route.TYPE, route.mesh, route.name) for route in (*routes, *tcp_routes))
    resources = assembly.resources
    caller_tags = caller_tags_header(dataplane)
    own_tags = dataplane.networking.gateway.tags
    service = dataplane.networking.gateway.service
    by_port: dict[int, list[GatewayListener]] = {}
    destinations: dict[Destination, None] = {}
    for listener in gateway.conf.listeners:
        if listener.protocol == "HTTP":  # HTTPS and TLS listeners: not yet
            by_port.setdefault(listener.port, []).append(listener)
        elif listener.protocol == "TCP":
            identity = tuple(sorted({**own_tags, **listener.tags}.items()))
            backends = tcp_backends(tcp_routes, listener)
            found = [Destination(service, subset, identity) for (service, subset), _ in backends]
            destinations.update(dict.fromkeys(found))
            if found:  # no route, no listener
                weighted = [(d.cluster_name, w) for d, (_, w) in zip(found, backends, strict=True)]
                address = dataplane.networking.address
                message = tcp_listener(gateway.name, service, address, listener.port, weighted)
                _put(resources, interner, types.LISTENER, message)
    for port, listeners in by_port.items():
        envoy_listener = http_listener(gateway.name, service, dataplane.networking.address, port)
        hosts: list[VirtualHost] = []
        clusters: ClusterNames = {}
        for listener in listeners:
            identity = tuple(sorted({**own_tags, **listener.tags}.items()))
            for host in virtual_hosts(listener, routes):
                hosts.append(host)
                for entry in host.entries:
                    for backend, _weight in entry.backends:
                        destination = Destination(backend[0], backend[1], identity)
                        clusters[backend] = destination.cluster_name
                        destinations[destination] = None
        hosts.sort(key=lambda host: exactness_key(host.hostname))  # Kuma's SortByHostname
        config = route_configuration(
            _route_config_name(envoy_listener.name), hosts, caller_tags, clusters, port
        )
        _put(resources, interner, types.LISTENER, envoy_listener)
        _put(resources, interner, types.ROUTE, config)
    subsets: dict[str, tuple[Destination, ...]] = dict(assembly.subsets)
    for destination in destinations:
        inputs = shared.watch_inputs(mesh, destination.service)
        if inputs.external:  # ExternalServices behind a gateway: not yet
            continue
        _put(
            resources,
            interner,
            types.CLUSTER,
            gateway_cluster(destination, inputs.protocol, inputs.tls_mesh),
        )
        load_assignment = shared.load_assignment(mesh, destination)
        resources[types.ENDPOINT][load_assignment.name] = load_assignment
        subsets[destination.service] = (*subsets.get(destination.service, ()), destination)
    services = assembly.outbound_services | {d.service for d in destinations}
    return Assembly(resources, frozenset(services), frozenset(selections), subsets)


def _put(resources: ProxyResources, interner: Interner, type_url: str, message: Message) -> None:
    name = _resource_name(message)
    resources.setdefault(type_url, {})[name] = interner.intern(type_url, name, message)
