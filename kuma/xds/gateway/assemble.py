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

from kuma.policies import own_clusters, resolve
from kuma.policies.caller_tags import caller_tags_header
from kuma.policies.gateway import apply_cluster, gateway_kinds
from kuma.policies.meshhttproute.api import MeshHTTPRoute
from kuma.policies.meshtcproute import MeshTCPRoute
from kuma.resources import Dataplane
from kuma.resources.model import GatewayListener
from kuma.xds import types
from kuma.xds.engine.assemble import Assembly
from kuma.xds.engine.interner import Interner
from kuma.xds.engine.mesh_state import MeshState
from kuma.xds.engine.shared import SharedResources
from kuma.xds.engine.zone_ingress import kind_key
from kuma.xds.generate.destination import Destination

from .parts import GatewayParts
from .resources import gateway_cluster, http_listener, route_configuration, tcp_listener
from .resources import route_config_name as _route_config_name
from .routes import targeting
from .selection import gateway_key, gateway_of, secret_key
from .terminate import secrets_read, terminating

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
    # Policies on the gateway's listeners (kuma/policies/gateway.py): any change of a kind with
    # a gateway branch re-assembles the mesh's gateways (few), whatever it selected.
    selections.update(kind_key(kind, mesh.name) for kind in gateway_kinds())
    selections.update((route.TYPE, route.mesh, route.name) for route in (*routes, *tcp_routes))
    gw = GatewayParts(
        gateway=gateway,
        service=dataplane.networking.gateway.service,
        address=dataplane.networking.address,
        own_tags=dataplane.networking.gateway.tags,
        caller_tags=caller_tags_header(dataplane),
        routes=routes,
        tcp_routes=tcp_routes,
        resources=assembly.resources,
        interner=interner,
        policies=resolve(dataplane, policies, presorted=True, gateway=gateway),
    )
    by_port: dict[tuple[str, int], list[GatewayListener]] = {}
    for listener in gateway.conf.listeners:
        if listener.protocol == "TCP":
            _tcp(gw, listener)
        else:  # Kuma collapses the listeners of a port into one Envoy listener
            by_port.setdefault((listener.protocol, listener.port), []).append(listener)
    for (protocol, port), listeners in by_port.items():
        if protocol == "HTTP":
            _http(gw, port, listeners)
        else:  # HTTPS, TLS: kuma/xds/gateway/terminate.py
            selections.update(secret_key(mesh.name, name) for name in secrets_read(listeners))
            terminating(gw, protocol, port, listeners, mesh.externals.secret)
    subsets: dict[str, tuple[Destination, ...]] = dict(assembly.subsets)
    for destination, (host, listener_protocol) in gw.destinations.items():
        inputs = shared.watch_inputs(mesh, destination.service)
        if inputs.external:  # ExternalServices behind a gateway: not yet
            continue
        cluster = gateway_cluster(destination, inputs.protocol, inputs.tls_mesh)
        apply_cluster(
            cluster, gw.policies, host, listener_protocol, destination.service, inputs.protocol
        )
        gw.put(types.CLUSTER, cluster)
        load_assignment = shared.load_assignment(mesh, destination)
        gw.resources[types.ENDPOINT][load_assignment.name] = load_assignment
        subsets[destination.service] = (*subsets.get(destination.service, ()), destination)
    for cluster in own_clusters(gw.policies):  # e.g. MeshAccessLog's OpenTelemetry collectors
        gw.put(types.CLUSTER, cluster)
    services = assembly.outbound_services | {d.service for d in gw.destinations}
    return Assembly(gw.resources, frozenset(services), frozenset(selections), subsets)


def _tcp(gw: GatewayParts, listener: GatewayListener) -> None:
    found = gw.tcp_destinations(listener)
    if found:  # no route, no listener
        message = tcp_listener(gw.gateway.name, gw.service, gw.address, listener.port, found)
        gw.put_listener(message, listener.port, "TCP")


def _http(gw: GatewayParts, port: int, listeners: list[GatewayListener]) -> None:
    envoy_listener = http_listener(gw.gateway.name, gw.service, gw.address, port)
    hosts, clusters = gw.route_table(listeners)
    config = route_configuration(
        _route_config_name(envoy_listener.name), hosts, gw.caller_tags, clusters, port
    )
    gw.put_listener(envoy_listener, port, "HTTP")
    gw.put_routes(config, port)
