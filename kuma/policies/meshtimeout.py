"""MeshTimeout (Kuma ``pkg/plugins/policies/meshtimeout``): connection, idle, request and
stream timeouts of outbounds (``to``) and inbounds (``from``).

Envoy change, as Kuma's plugin: on HTTP listeners each route gets ``timeout`` (request
timeout, default 15s) and ``idle_timeout`` (stream idle timeout, default 30m), the connection
manager ``request_headers_timeout`` (default 0s) and a ``0s`` connection idle timeout (the
cluster carries it); TCP proxies get ``idle_timeout`` (default 1h). Clusters get
``connect_timeout`` (default 5s) and, for http/http2, upstream idle (default 1h), max stream
and max connection duration (default 0s). Outbounds use the ``to`` rule of the destination
service; inbounds the ``from`` rule for any client (Kuma's MeshElement).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

import msgspec
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as upstream_http_pb2

from kuma.resources.errors import Violation
from kuma.resources.model import (
    MESH,
    MESH_GATEWAY,
    MESH_HTTP_ROUTE,
    MESH_SERVICE,
    Policy,
    PolicyConf,
    PolicySpec,
)
from kuma.resources.policy import ALL_TOP_KINDS, PolicyKind, register

from .conf import HOUR, MINUTE, SECOND, check_duration, nanoseconds
from .gateway import (
    HTTP_LISTENERS,
    GatewayPlugin,
    Reach,
    listener_rules,
    per_route,
    register_gateway_plugin,
)
from .matching import InboundKey, KindPolicies
from .plugin import (
    HTTP_PROTOCOLS,
    PolicyPlugin,
    from_rule_input,
    register_plugin,
    service_element,
    set_duration,
    update_hcm,
    update_http_options,
    update_tcp_proxy,
)
from .rules import Rule

# Kuma's pkg/plugins/policies/core/defaults.
DEFAULT_CONNECT_TIMEOUT = 5 * SECOND
DEFAULT_IDLE_TIMEOUT = HOUR
DEFAULT_STREAM_IDLE_TIMEOUT = 30 * MINUTE
DEFAULT_REQUEST_TIMEOUT = 15 * SECOND
DEFAULT_GATEWAY_IDLE_TIMEOUT = 5 * MINUTE
DEFAULT_GATEWAY_STREAM_IDLE_TIMEOUT = 5 * SECOND
DEFAULT_GATEWAY_REQUEST_HEADERS_TIMEOUT = 500_000_000


class Http(PolicyConf, frozen=True):
    request_timeout: str | None = None
    stream_idle_timeout: str | None = None
    max_stream_duration: str | None = None
    max_connection_duration: str | None = None
    request_headers_timeout: str | None = None


class Conf(PolicyConf, frozen=True):
    connection_timeout: str | None = None
    idle_timeout: str | None = None
    http: Http | None = None


class MeshTimeout(Policy, tag="MeshTimeout", frozen=True):
    spec: PolicySpec[Conf] = msgspec.field(default_factory=PolicySpec)
    TYPE: ClassVar[str] = "MeshTimeout"


_ROUTE_ONLY = "can't be specified when top-level TargetRef is referencing MeshHTTPRoute"


def _validate_lists(spec: PolicySpec[Any], out: list[Violation]) -> None:
    if not spec.to and not spec.from_:
        out.append(Violation("spec", "at least one of 'from', 'to' has to be defined"))


def _validate_conf(conf: Conf | None, path: str, top: str, out: list[Violation]) -> None:
    if conf is None or (
        conf.connection_timeout is None and conf.idle_timeout is None and conf.http is None
    ):
        out.append(Violation(path, "at least one timeout should be configured"))
        return
    if top == MESH_HTTP_ROUTE:
        for name, value in (
            ("connectionTimeout", conf.connection_timeout),
            ("idleTimeout", conf.idle_timeout),
        ):
            if value is not None:
                out.append(Violation(f"{path}.{name}", _ROUTE_ONLY))
        if conf.http is not None:
            for name, value in (
                ("maxStreamDuration", conf.http.max_stream_duration),
                ("maxConnectionDuration", conf.http.max_connection_duration),
            ):
                if value is not None:
                    out.append(Violation(f"{path}.http.{name}", _ROUTE_ONLY))
    check_duration(out, f"{path}.connectionTimeout", conf.connection_timeout, positive=True)
    check_duration(out, f"{path}.idleTimeout", conf.idle_timeout)
    http = conf.http
    if http is None:
        return
    if (
        http.request_timeout is None
        and http.stream_idle_timeout is None
        and http.max_stream_duration is None
        and http.max_connection_duration is None
    ):
        out.append(
            Violation(f"{path}.http", "at least one timeout in this section should be configured")
        )
    for name, value in (
        ("requestTimeout", http.request_timeout),
        ("streamIdleTimeout", http.stream_idle_timeout),
        ("maxStreamDuration", http.max_stream_duration),
        ("maxConnectionDuration", http.max_connection_duration),
        ("requestHeadersTimeout", http.request_headers_timeout),
    ):
        check_duration(out, f"{path}.http.{name}", value)


KIND = register(
    PolicyKind(
        name="MeshTimeout",
        cls=MeshTimeout,
        plural="meshtimeouts",
        conf_type=Conf,
        top_kinds=ALL_TOP_KINDS,
        to_kinds=(MESH, MESH_SERVICE),
        from_kinds=(MESH,),
        validate_conf=_validate_conf,
        validate_lists=_validate_lists,
        gateway_listener_tags=True,
        restricting_tops=(MESH_GATEWAY, MESH_HTTP_ROUTE),
        order=8,
    )
)


# --- Envoy ---------------------------------------------------------------------------------


def _http(conf: Conf) -> Http:
    return conf.http or Http()


def configure_route_action(action: route_components_pb2.RouteAction, conf: Conf) -> None:
    """Kuma's ConfigureRouteAction."""
    http = _http(conf)
    set_duration(action.timeout, nanoseconds(http.request_timeout, DEFAULT_REQUEST_TIMEOUT) or 0)
    if http.stream_idle_timeout is not None:
        set_duration(action.idle_timeout, nanoseconds(http.stream_idle_timeout) or 0)
    elif not action.HasField("idle_timeout"):
        set_duration(action.idle_timeout, DEFAULT_STREAM_IDLE_TIMEOUT)


def _configure_listener(listener: listener_pb2.Listener, conf: Conf | None, protocol: str) -> None:
    """Kuma's ListenerConfigurer.ConfigureListener with ``conf`` the rule for the element
    (None: no rule; routes and TCP proxies keep what they have)."""

    def http(manager: hcm_pb2.HttpConnectionManager) -> None:
        if conf is not None:
            for host in manager.route_config.virtual_hosts:
                for route in host.routes:
                    if route.HasField("route"):
                        configure_route_action(route.route, conf)
            set_duration(
                manager.request_headers_timeout,
                nanoseconds(_http(conf).request_headers_timeout, 0) or 0,
            )
        set_duration(manager.common_http_protocol_options.idle_timeout, 0)

    def tcp(proxy: tcp_proxy_pb2.TcpProxy) -> None:
        if conf is not None:
            set_duration(
                proxy.idle_timeout, nanoseconds(conf.idle_timeout, DEFAULT_IDLE_TIMEOUT) or 0
            )

    for chain in listener.filter_chains:
        if protocol in HTTP_PROTOCOLS:
            update_hcm(chain, http)
        else:
            update_tcp_proxy(chain, tcp)


def _configure_cluster(cluster: cluster_pb2.Cluster, conf: Conf, protocol: str) -> None:
    """Kuma's ClusterConfigurer (upstream HTTP options for http and http2 only, as Kuma)."""
    set_duration(
        cluster.connect_timeout, nanoseconds(conf.connection_timeout, DEFAULT_CONNECT_TIMEOUT) or 0
    )
    if protocol not in ("http", "http2"):
        return
    http = _http(conf)

    def change(options: upstream_http_pb2.HttpProtocolOptions) -> None:
        common = options.common_http_protocol_options
        set_duration(common.idle_timeout, nanoseconds(conf.idle_timeout, DEFAULT_IDLE_TIMEOUT) or 0)
        set_duration(common.max_stream_duration, nanoseconds(http.max_stream_duration, 0) or 0)
        set_duration(
            common.max_connection_duration, nanoseconds(http.max_connection_duration, 0) or 0
        )

    update_http_options(cluster, change)


def _inbound_conf(policies: KindPolicies, inbound: InboundKey) -> Conf | None:
    # Kuma: an inbound the policies do not select has no rules at all, which reads as an
    # empty Conf (every default); a selected inbound without a matching rule reads as None.
    rules = policies.from_rules.get(inbound)
    if rules is None:
        return Conf()
    conf: Conf | None = policies.conf(rules.compute({}))
    return conf


class MeshTimeoutPlugin(PolicyPlugin):
    kind = KIND

    # The shared resources' keys hold only what each hook reads (_configure_listener,
    # _configure_cluster): a new connectionTimeout rebuilds clusters, not listeners.
    def outbound_listener_input(self, policies: KindPolicies, rule: Rule | None) -> Any:
        conf: Conf | None = policies.conf(rule)
        if conf is None:
            return None
        http = _http(conf)
        return [
            conf.idle_timeout,
            http.request_timeout,
            http.stream_idle_timeout,
            http.request_headers_timeout,
        ]

    def outbound_cluster_input(self, policies: KindPolicies, rule: Rule | None) -> Any:
        conf: Conf | None = policies.conf(rule)
        if conf is None:
            return None
        http = _http(conf)
        return [
            conf.connection_timeout,
            conf.idle_timeout,
            http.max_stream_duration,
            http.max_connection_duration,
        ]

    def outbound_listener(
        self, listener: listener_pb2.Listener, policies: KindPolicies, service: str, protocol: str
    ) -> None:
        _configure_listener(listener, policies.to_conf(service_element(service)), protocol)

    def outbound_cluster(
        self, cluster: cluster_pb2.Cluster, policies: KindPolicies, service: str, protocol: str
    ) -> None:
        conf = policies.to_conf(service_element(service))
        if conf is not None:
            _configure_cluster(cluster, conf, protocol)

    def inbound_input(self, policies: KindPolicies, inbound: InboundKey) -> Hashable:
        # What _inbound_conf reads: a new `to` conf keeps the proxy's inbound resources.
        return from_rule_input(policies, inbound)

    def inbound_listener(
        self,
        listener: listener_pb2.Listener,
        policies: KindPolicies,
        inbound: InboundKey,
        protocol: str,
    ) -> None:
        _configure_listener(listener, _inbound_conf(policies, inbound), protocol)

    def inbound_cluster(
        self,
        cluster: cluster_pb2.Cluster,
        policies: KindPolicies,
        inbound: InboundKey,
        protocol: str,
    ) -> None:
        conf = _inbound_conf(policies, inbound)
        if conf is not None:
            _configure_cluster(cluster, conf, protocol)


PLUGIN = register_plugin(MeshTimeoutPlugin())


# --- the builtin gateway (Kuma's applyToGateway) --------------------------------------------


class MeshTimeoutGateway(GatewayPlugin):
    kind = KIND

    def listener(
        self,
        listener: listener_pb2.Listener,
        policies: KindPolicies,
        port: InboundKey,
        protocol: str,
    ) -> None:
        """Kuma's ConfigureGatewayListener: a port no policy selects reads as an empty Conf
        (every gateway default); a selected port without a matching rule is left as built."""
        conf = _inbound_conf(policies, port)
        if conf is None:
            return
        http = _http(conf)
        idle = nanoseconds(conf.idle_timeout, DEFAULT_GATEWAY_IDLE_TIMEOUT) or 0

        def manager(hcm: hcm_pb2.HttpConnectionManager) -> None:
            set_duration(hcm.common_http_protocol_options.idle_timeout, idle)
            set_duration(
                hcm.request_headers_timeout,
                nanoseconds(http.request_headers_timeout, DEFAULT_GATEWAY_REQUEST_HEADERS_TIMEOUT)
                or 0,
            )
            set_duration(
                hcm.stream_idle_timeout,
                nanoseconds(http.stream_idle_timeout, DEFAULT_GATEWAY_STREAM_IDLE_TIMEOUT) or 0,
            )
            if http.request_timeout is not None:
                set_duration(hcm.request_timeout, nanoseconds(http.request_timeout) or 0)

        def tcp(proxy: tcp_proxy_pb2.TcpProxy) -> None:
            set_duration(proxy.idle_timeout, idle)

        for chain in listener.filter_chains:
            if protocol in HTTP_LISTENERS:
                update_hcm(chain, manager)
            else:
                update_tcp_proxy(chain, tcp)

    def route_configuration(
        self,
        config: route_pb2.RouteConfiguration,
        policies: KindPolicies,
        port: InboundKey,
        services: Sequence[str],
    ) -> None:
        for route, conf in per_route(config, policies, port, _conf):
            if route.HasField("route"):
                configure_route_action(route.route, conf)

    def cluster(self, cluster: cluster_pb2.Cluster, policies: KindPolicies, at: Reach) -> None:
        rules = listener_rules(policies, at.port)
        conf: Conf | None = (
            None if rules is None else policies.conf(rules.compute(service_element(at.service)))
        )
        if conf is not None:
            _configure_cluster(cluster, conf, at.protocol)


register_gateway_plugin(MeshTimeoutGateway())


def _conf(conf: Conf | None) -> Conf | None:
    """A route takes the conf itself (``configure_route_action`` reads what it needs)."""
    return conf
