"""MeshLoadBalancingStrategy on the builtin gateway (Kuma's ``configureGateway``): per port, a
backend's cluster gets the load balancer (and locality-weighted LB with affinity tags) of the
``to`` rule for its service, and every route of the port gets the hash policies of the rule of
each service the port reaches (Kuma walks them in Go map order; here in the order found).

Not here: the rule's ``localityAwareness`` shaping of the gateway's endpoints (its
ClusterLoadAssignments are shared with other gateways and patched on endpoint changes)."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_pb2

from .gateway import GatewayPlugin, Reach, listener_rules, register_gateway_plugin
from .loadbalancing_envoy import (
    configure_cluster,
    hash_policies,
    route_hash_policy,
    uses_locality_weights,
)
from .matching import InboundKey, KindPolicies
from .meshloadbalancingstrategy import KIND, Conf
from .plugin import service_element


class MeshLoadBalancingStrategyGateway(GatewayPlugin):
    kind = KIND

    def cluster(self, cluster: cluster_pb2.Cluster, policies: KindPolicies, at: Reach) -> None:
        rules = listener_rules(policies, at.port)
        conf: Conf | None = (
            None if rules is None else policies.conf(rules.compute(service_element(at.service)))
        )
        if conf is None:
            return
        if uses_locality_weights(conf.locality_awareness):
            cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
        if conf.load_balancer is not None:
            configure_cluster(cluster, conf.load_balancer)

    def route_configuration(
        self,
        config: route_pb2.RouteConfiguration,
        policies: KindPolicies,
        port: InboundKey,
        services: Sequence[str],
    ) -> None:
        rules = listener_rules(policies, port)
        if rules is None:
            return
        for service in services:
            conf: Conf | None = policies.conf(rules.compute(service_element(service)))
            found = hash_policies(conf.load_balancer if conf is not None else None)
            if not found:
                continue
            generated = [route_hash_policy(policy) for policy in found]
            for host in config.virtual_hosts:
                for route in host.routes:
                    if route.HasField("route"):  # a redirect balances nothing
                        route.route.hash_policy.extend(generated)


register_gateway_plugin(MeshLoadBalancingStrategyGateway())
