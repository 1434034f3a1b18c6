"""MeshLoadBalancingStrategy's Envoy side, shared by the sidecar plugin
(``meshloadbalancingstrategy``) and the builtin gateway's (``loadbalancing_gateway``): a
cluster's load balancer (Kuma's LoadBalancerConfigurer), the routes' hash policies (Kuma's
HashPolicyConfigurer) and whether a cluster weighs localities; ``decimal_of`` reads Kuma's
int-or-string decimals for them, the kind's validation and ``locality_aware``."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2

from .conf import nanoseconds
from .plugin import set_duration

if TYPE_CHECKING:  # meshloadbalancingstrategy imports this module: its conf types for the
    # annotations only
    from .meshloadbalancingstrategy import HashPolicy, LoadBalancer, LocalityAwareness


def decimal_of(value: int | str) -> Decimal | None:
    """Kuma's NewDecimalFromIntOrString; None when the string is no finite number."""
    try:
        number = Decimal(str(value).strip() if isinstance(value, str) else value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


_LB_POLICY = {
    "RoundRobin": cluster_pb2.Cluster.ROUND_ROBIN,
    "LeastRequest": cluster_pb2.Cluster.LEAST_REQUEST,
    "RingHash": cluster_pb2.Cluster.RING_HASH,
    "Random": cluster_pb2.Cluster.RANDOM,
    "Maglev": cluster_pb2.Cluster.MAGLEV,
}
_HASH_FUNCTION = {
    "XXHash": cluster_pb2.Cluster.RingHashLbConfig.XX_HASH,
    "MurmurHash2": cluster_pb2.Cluster.RingHashLbConfig.MURMUR_HASH_2,
}


def _wrapped(target: Any, value: int) -> None:
    target.value = value
    target.SetInParent()


def configure_cluster(cluster: cluster_pb2.Cluster, lb: LoadBalancer) -> None:
    """Kuma's LoadBalancerConfigurer."""
    cluster.lb_policy = _LB_POLICY[lb.type]
    if lb.type == "LeastRequest" and lb.least_request is not None:
        least = lb.least_request
        if least.active_request_bias is None and least.choice_count is None:
            return
        config = cluster.least_request_lb_config
        config.SetInParent()
        if least.active_request_bias is not None:
            config.active_request_bias.default_value = float(
                decimal_of(least.active_request_bias) or 0
            )
        if least.choice_count is not None:
            _wrapped(config.choice_count, least.choice_count)
    elif lb.type == "RingHash" and lb.ring_hash is not None:
        ring = lb.ring_hash
        config_ring = cluster.ring_hash_lb_config
        config_ring.SetInParent()
        if ring.min_ring_size is not None:
            _wrapped(config_ring.minimum_ring_size, ring.min_ring_size)
        if ring.max_ring_size is not None:
            _wrapped(config_ring.maximum_ring_size, ring.max_ring_size)
        if ring.hash_function is not None:
            config_ring.hash_function = _HASH_FUNCTION[ring.hash_function]
    elif lb.type == "Maglev" and lb.maglev is not None and lb.maglev.table_size is not None:
        _wrapped(cluster.maglev_lb_config.table_size, lb.maglev.table_size)


def hash_policies(lb: LoadBalancer | None) -> tuple[HashPolicy, ...] | None:
    """The hash policies the outbound routes get (Kuma: RingHash/Maglev with a list)."""
    if lb is None:
        return None
    if lb.type == "RingHash" and lb.ring_hash is not None:
        return lb.ring_hash.hash_policies
    if lb.type == "Maglev" and lb.maglev is not None:
        return lb.maglev.hash_policies
    return None


def route_hash_policy(policy: HashPolicy) -> route_components_pb2.RouteAction.HashPolicy:
    """Kuma's HashPolicyConfigurer, for one policy."""
    found = route_components_pb2.RouteAction.HashPolicy(terminal=bool(policy.terminal))
    if policy.type == "Header" and policy.header is not None:
        found.header.header_name = policy.header.name
    elif policy.type == "Cookie" and policy.cookie is not None:
        found.cookie.name = policy.cookie.name
        if policy.cookie.ttl is not None:
            set_duration(found.cookie.ttl, nanoseconds(policy.cookie.ttl) or 0)
        found.cookie.path = policy.cookie.path or ""
    elif policy.type == "Connection" and policy.connection is not None:
        found.connection_properties.source_ip = bool(policy.connection.source_ip)
    elif policy.type == "QueryParameter" and policy.query_parameter is not None:
        found.query_parameter.name = policy.query_parameter.name
    elif policy.type == "FilterState" and policy.filter_state is not None:
        found.filter_state.key = policy.filter_state.key
    return found


def uses_locality_weights(locality: LocalityAwareness | None) -> bool:
    """Kuma's ``shouldUseLocalityWeightedLb``: with affinity tags the cluster weighs
    localities (the local ones carry the tags' weights)."""
    return bool(locality and locality.local_zone and locality.local_zone.affinity_tags)
