"""MeshAccessLog on the builtin gateway (Kuma's meshaccesslog ``applyToGateway``): a port's
``to`` rule logs as going from the gateway's service to any (``*``, Kuma's ``MatchAllTag``),
then its ``from`` rule as coming from ``unknown`` to the gateway's service; OpenTelemetry
collectors get their clusters as a sidecar's do (``own_clusters``)."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2

from .gateway import GatewayPlugin, listener_rules, register_gateway_plugin
from .matching import InboundKey, KindPolicies
from .meshaccesslog import (
    INBOUND,
    KIND,
    OUTBOUND,
    UNKNOWN,
    Conf,
    Placeholders,
    collectors_of,
    configure_listener,
    identifying_service,
)

MATCH_ALL = "*"


class MeshAccessLogGateway(GatewayPlugin):
    kind = KIND

    def listener(
        self,
        listener: listener_pb2.Listener,
        policies: KindPolicies,
        port: InboundKey,
        protocol: str,
    ) -> None:
        dataplane = policies.dataplane
        if dataplane is None:
            return
        service = identifying_service(dataplane)
        collectors = collectors_of(policies)
        socket = policies.access_log_socket
        to_rules = listener_rules(policies, port)
        if to_rules is not None:
            conf: Conf | None = policies.conf(to_rules.compute({}))
            to_any = Placeholders(dataplane, OUTBOUND, service, MATCH_ALL, socket)
            configure_listener(listener, conf, to_any, collectors)
        from_rules = policies.from_rules.get(port)
        if from_rules is not None:
            conf = policies.conf(from_rules.compute({}))
            from_unknown = Placeholders(dataplane, INBOUND, UNKNOWN, service, socket)
            configure_listener(listener, conf, from_unknown, collectors)


register_gateway_plugin(MeshAccessLogGateway())
