"""MeshRetry on the builtin gateway (Kuma's meshretry ``applyToGateway``: its Configurer on the
port's ``to`` rules): a TCP port's proxy gets ``max_connect_attempts``; on HTTP(S) ports, which
route by RDS, every route gets the retry policy of the rule for its route (or the port's
common one), from the ``http`` section only (a gateway forwards as HTTP)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2

from .gateway import (
    HTTP_LISTENERS,
    GatewayPlugin,
    listener_rules,
    per_route,
    register_gateway_plugin,
)
from .matching import InboundKey, KindPolicies
from .meshretry import KIND, Conf
from .plugin import update_tcp_proxy
from .retry_policy import http_retry_policy


class MeshRetryGateway(GatewayPlugin):
    kind = KIND

    def listener(
        self,
        listener: listener_pb2.Listener,
        policies: KindPolicies,
        port: InboundKey,
        protocol: str,
    ) -> None:
        # HTTP(S) ports route by RDS: their retries are set on the route configurations.
        rules = listener_rules(policies, port)
        if rules is None or protocol in HTTP_LISTENERS or not listener.filter_chains:
            return
        conf: Conf | None = policies.conf(rules.compute({}))
        if conf is None or conf.tcp is None or conf.tcp.max_connect_attempt is None:
            return
        attempts = conf.tcp.max_connect_attempt

        def tcp(proxy: Any) -> None:
            proxy.max_connect_attempts.value = attempts
            proxy.max_connect_attempts.SetInParent()

        update_tcp_proxy(listener.filter_chains[0], tcp)  # Kuma configures the first chain only

    def route_configuration(
        self,
        config: route_pb2.RouteConfiguration,
        policies: KindPolicies,
        port: InboundKey,
        services: Sequence[str],
    ) -> None:
        for route, policy in per_route(config, policies, port, _gateway_policy):
            if route.HasField("route"):
                route.route.retry_policy.CopyFrom(policy)


def _gateway_policy(conf: Conf | None) -> route_components_pb2.RetryPolicy | None:
    # A gateway forwards as HTTP (Kuma's Configurer with ProtocolHTTP): the http section only.
    if conf is None or conf.http is None:
        return None
    return http_retry_policy(conf.http)


register_gateway_plugin(MeshRetryGateway())
