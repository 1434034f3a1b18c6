"""What every listener of one gateway proxy's assembly shares: the gateway's identity, its
routes, the resources being built and the backend destinations found so far."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from kuma.policies.gateway import apply_listener, apply_route_configuration
from kuma.policies.matching import HostKey, InboundKey, ProxyPolicies
from kuma.policies.meshhttproute.api import MeshHTTPRoute
from kuma.policies.meshtcproute import MeshTCPRoute
from kuma.resources.model import GatewayListener, MeshGateway
from kuma.xds import types
from kuma.xds.engine.assemble import _resource_name
from kuma.xds.engine.interner import Interner
from kuma.xds.engine.watches import ProxyResources
from kuma.xds.generate._pb import Message
from kuma.xds.generate.destination import Destination

from .hostnames import exactness_key
from .resources import ClusterNames
from .routes import VirtualHost, tcp_backends, virtual_hosts


@dataclass
class GatewayParts:
    gateway: MeshGateway
    #: The gateway Dataplane's ``kuma.io/service`` (stat prefixes).
    service: str
    address: str
    own_tags: Mapping[str, str]
    caller_tags: str
    routes: Sequence[MeshHTTPRoute]
    tcp_routes: Sequence[MeshTCPRoute]
    resources: ProxyResources
    interner: Interner
    #: The policies matched for the gateway's listeners (``kuma.policies.gateway``).
    policies: ProxyPolicies
    #: The backends (clusters) the listeners built so far forward to, in order found, with
    #: the listener whose policies shape each (the first that reaches it): its host key and
    #: protocol.
    destinations: dict[Destination, tuple[HostKey, str]] = field(default_factory=dict)

    def put(self, type_url: str, message: Message) -> None:
        name = _resource_name(message)
        self.resources.setdefault(type_url, {})[name] = self.interner.intern(
            type_url, name, message
        )

    def port(self, port: int) -> InboundKey:
        """A listener port as policies key it (Kuma's InboundListener)."""
        return (self.address, port)

    def _reached(self, listener: GatewayListener) -> tuple[HostKey, str]:
        # Kuma keys a port's hostnames apart only for HTTPS and TLS ("*" for HTTP and TCP).
        terminated = listener.protocol in ("HTTPS", "TLS")
        hostname = listener.effective_hostname if terminated else "*"
        return (self.address, listener.port, hostname), listener.protocol

    def put_listener(self, listener: listener_pb2.Listener, port: int, protocol: str) -> None:
        apply_listener(listener, self.policies, self.port(port), protocol)
        self.put(types.LISTENER, listener)

    def put_routes(self, config: route_pb2.RouteConfiguration, port: int) -> None:
        """After every route table of the port was built (its services are all known)."""
        key = self.port(port)
        services = [d.service for d, (host, _) in self.destinations.items() if host[:2] == key]
        apply_route_configuration(config, self.policies, key, list(dict.fromkeys(services)))
        self.put(types.ROUTE, config)

    def identity(self, listener: GatewayListener) -> tuple[tuple[str, str], ...]:
        """Kuma's additional identifying tags of a listener's clusters."""
        return tuple(sorted({**self.own_tags, **listener.tags}.items()))

    def route_table(
        self, listeners: Sequence[GatewayListener]
    ) -> tuple[list[VirtualHost], ClusterNames]:
        """The virtual hosts of these listeners (most exact first, Kuma's SortByHostname) and
        the cluster of each backend they forward to."""
        hosts: list[VirtualHost] = []
        clusters: ClusterNames = {}
        for listener in listeners:
            identity = self.identity(listener)
            for host in virtual_hosts(listener, self.routes):
                hosts.append(host)
                for entry in host.entries:
                    for backend, _weight in entry.backends:
                        destination = Destination(backend[0], backend[1], identity)
                        clusters[backend] = destination.cluster_name
                        self.destinations.setdefault(destination, self._reached(listener))
        hosts.sort(key=lambda host: exactness_key(host.hostname))
        return hosts, clusters

    def tcp_destinations(self, listener: GatewayListener) -> list[tuple[str, int]]:
        """The weighted clusters of a TCP or TLS listener's routes."""
        identity = self.identity(listener)
        backends = tcp_backends(self.tcp_routes, listener)
        found = [Destination(service, subset, identity) for (service, subset), _ in backends]
        for destination in found:
            self.destinations.setdefault(destination, self._reached(listener))
        return [(d.cluster_name, w) for d, (_, w) in zip(found, backends, strict=True)]
