"""MeshLoadBalancingStrategy (Kuma ``pkg/plugins/policies/meshloadbalancingstrategy``): how
a proxy balances requests over a service's endpoints.

Envoy change, as Kuma's plugin: an outbound service's clusters (its split clusters too) take
the ``loadBalancer`` of the service's ``to`` rule (``lb_policy`` and its config); with
``RingHash`` or ``Maglev`` the routes of the outbound's listener get the hash policies.

``localityAwareness`` rewrites the consumer's ClusterLoadAssignments (``locality_aware.py``);
here only its cluster side: with affinity tags the cluster weighs localities
(``locality_weighted_lb_config``, Kuma's ``LocalityWeightedLbConfigurer``). The Envoy
configuration itself is in ``loadbalancing_envoy``; the builtin gateway's part is
``loadbalancing_gateway``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from kuma.resources.errors import Violation
from kuma.resources.model import (
    MESH,
    MESH_GATEWAY,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    Policy,
    PolicyConf,
    PolicySpec,
)
from kuma.resources.policy import PolicyKind, register

from .conf import MUST_BE_DEFINED, MUST_NOT_BE_EMPTY, check_duration
from .loadbalancing_envoy import (
    configure_cluster,
    decimal_of,
    hash_policies,
    route_hash_policy,
    uses_locality_weights,
)
from .matching import KindPolicies
from .plugin import PolicyPlugin, register_plugin, service_element, update_hcm
from .rules import Rule

#: Kuma's fields are uint32: a value outside is refused when decoding; the bounds of its
#: schema (checked by its REST decoder) likewise.
U32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
ChoiceCount = Annotated[int, msgspec.Meta(ge=2, le=2**32 - 1)]
RingSize = Annotated[int, msgspec.Meta(ge=1, le=8_000_000)]
TableSize = Annotated[int, msgspec.Meta(ge=1, le=5_000_011)]

HashPolicyType = Literal["Header", "Cookie", "Connection", "QueryParameter", "FilterState"]


class AffinityTag(PolicyConf, frozen=True):
    key: str = ""
    weight: U32 | None = None


class LocalZone(PolicyConf, frozen=True):
    affinity_tags: tuple[AffinityTag, ...] | None = None


class FromZone(PolicyConf, frozen=True):
    zones: tuple[str, ...] = ()


class ToZone(PolicyConf, frozen=True):
    # A plain string: an unknown type gets Kuma's "unrecognized type", not a decode error.
    type: str = ""
    zones: tuple[str, ...] | None = None


class Failover(PolicyConf, frozen=True):
    from_: FromZone | None = msgspec.field(default=None, name="from")
    to: ToZone = msgspec.field(default_factory=ToZone)


class FailoverThreshold(PolicyConf, frozen=True):
    percentage: int | str | None = None


class CrossZone(PolicyConf, frozen=True):
    failover: tuple[Failover, ...] = ()
    failover_threshold: FailoverThreshold | None = None


class LocalityAwareness(PolicyConf, frozen=True):
    disabled: bool | None = None
    local_zone: LocalZone | None = None
    cross_zone: CrossZone | None = None


class Header(PolicyConf, frozen=True):
    name: str = ""


class Cookie(PolicyConf, frozen=True):
    name: str = ""
    ttl: str | None = None
    path: str | None = None


class Connection(PolicyConf, frozen=True):
    source_ip: bool | None = msgspec.field(default=None, name="sourceIP")


class QueryParameter(PolicyConf, frozen=True):
    name: str = ""


class FilterState(PolicyConf, frozen=True):
    key: str = ""


class HashPolicy(PolicyConf, frozen=True):
    # Kuma's validator lets an unknown type through and its plugin then dereferences nothing;
    # here the type is an enum, so such a policy is refused with the field named.
    type: HashPolicyType
    terminal: bool | None = None
    header: Header | None = None
    cookie: Cookie | None = None
    connection: Connection | None = None
    query_parameter: QueryParameter | None = None
    filter_state: FilterState | None = None


class LeastRequest(PolicyConf, frozen=True):
    choice_count: ChoiceCount | None = None
    active_request_bias: int | str | None = None


class RingHash(PolicyConf, frozen=True):
    hash_function: Literal["XXHash", "MurmurHash2"] | None = None
    min_ring_size: RingSize | None = None
    max_ring_size: RingSize | None = None
    hash_policies: tuple[HashPolicy, ...] | None = None


class Maglev(PolicyConf, frozen=True):
    table_size: TableSize | None = None
    hash_policies: tuple[HashPolicy, ...] | None = None


class Empty(PolicyConf, frozen=True):
    pass


class LoadBalancer(PolicyConf, frozen=True):
    type: Literal["RoundRobin", "LeastRequest", "RingHash", "Random", "Maglev"]
    round_robin: Empty | None = None
    least_request: LeastRequest | None = None
    ring_hash: RingHash | None = None
    random: Empty | None = None
    maglev: Maglev | None = None


class Conf(PolicyConf, frozen=True):
    locality_awareness: LocalityAwareness | None = None
    load_balancer: LoadBalancer | None = None


class MeshLoadBalancingStrategy(Policy, tag="MeshLoadBalancingStrategy", frozen=True):
    spec: PolicySpec[Conf] = msgspec.field(default_factory=PolicySpec)
    TYPE: ClassVar[str] = "MeshLoadBalancingStrategy"


# --- validation ----------------------------------------------------------------------------


def _is_prime(number: int) -> bool:
    if number < 2:
        return False
    return all(number % divisor for divisor in range(2, int(number**0.5) + 1))


def _validate_local_zone(out: list[Violation], path: str, zone: LocalZone | None) -> None:
    if zone is None:
        return
    tags = zone.affinity_tags or ()
    weighted = 0
    for index, tag in enumerate(tags):
        at = f"{path}.affinityTags[{index}]"
        if not tag.key:
            out.append(Violation(f"{at}.key", MUST_NOT_BE_EMPTY))
        if tag.weight is not None:
            weighted += 1
            if tag.weight <= 0:
                out.append(Violation(f"{at}.weight", "must be greater than 0"))
    if 0 < weighted != len(tags):
        out.append(
            Violation(f"{path}.affinityTags", "all or none affinity tags should have weight")
        )


def _validate_cross_zone(out: list[Violation], path: str, zone: CrossZone | None) -> None:
    if zone is None:
        return
    for index, failover in enumerate(zone.failover):
        at = f"{path}.failover[{index}]"
        if failover.from_ is not None:
            if not failover.from_.zones:
                out.append(Violation(f"{at}.from.zones", MUST_NOT_BE_EMPTY))
            for number, name in enumerate(failover.from_.zones):
                if not name:
                    out.append(Violation(f"{at}.from.zones[{number}]", MUST_NOT_BE_EMPTY))
        kind, zones = failover.to.type, failover.to.zones
        if kind in ("Any", "None"):
            if zones:
                out.append(Violation(f"{at}.to.zones", f"must be empty when type is {kind}"))
        elif kind in ("AnyExcept", "Only"):
            if not zones:
                out.append(Violation(f"{at}.to.zones", f"must not be empty when type is {kind}"))
        else:
            out.append(Violation(f"{at}.to.type", "unrecognized type"))
    threshold = zone.failover_threshold
    if threshold is not None:
        at = f"{path}.failoverThreshold.percentage"
        if threshold.percentage is None:
            out.append(Violation(at, MUST_BE_DEFINED))
            return
        value = decimal_of(threshold.percentage)
        if value is None:
            out.append(Violation(at, "string must be a valid number"))
        elif not 0 <= value <= 100:
            out.append(Violation(at, "must be in inclusive range [0.0, 100.0]"))
        elif value == 0:
            out.append(Violation(at, "must be greater than 0"))


def _validate_hash_policies(
    out: list[Violation], path: str, policies: tuple[HashPolicy, ...] | None
) -> None:
    for index, policy in enumerate(policies or ()):
        at = f"{path}.hashPolicies[{index}]"
        field = {
            "Header": ("header", policy.header),
            "Cookie": ("cookie", policy.cookie),
            "Connection": ("connection", policy.connection),
            "QueryParameter": ("queryParameter", policy.query_parameter),
            "FilterState": ("filterState", policy.filter_state),
        }[policy.type]
        if field[1] is None:
            out.append(Violation(f"{at}.{field[0]}", MUST_BE_DEFINED))
        elif policy.cookie is not None and policy.type == "Cookie":
            if policy.cookie.path is not None and not policy.cookie.path.startswith("/"):
                out.append(Violation(f"{at}.cookie.path", "must be an absolute path"))
            # Kuma's decoder refuses a malformed ttl; a negative one Envoy would refuse.
            check_duration(out, f"{at}.cookie.ttl", policy.cookie.ttl)


def _validate_load_balancer(out: list[Violation], path: str, lb: LoadBalancer | None) -> None:
    if lb is None:
        return
    if lb.type == "RingHash" and lb.ring_hash is not None:
        _validate_hash_policies(out, f"{path}.ringHash", lb.ring_hash.hash_policies)
    elif lb.type == "Maglev" and lb.maglev is not None:
        _validate_hash_policies(out, f"{path}.maglev", lb.maglev.hash_policies)
        size = lb.maglev.table_size
        # Not checked by Kuma; Envoy refuses the cluster (the whole update) otherwise.
        if size is not None and not _is_prime(size):
            out.append(Violation(f"{path}.maglev.tableSize", "must be a prime number"))
    elif lb.type == "LeastRequest" and lb.least_request is not None:
        bias = lb.least_request.active_request_bias
        if bias is not None:
            at = f"{path}.leastRequest.activeRequestBias"
            value = decimal_of(bias)
            if value is None:
                out.append(Violation(at, "string must be a valid number"))
            elif value < 0:
                out.append(Violation(at, "must be greater or equal then: 0"))


def _validate_conf(conf: Conf | None, path: str, top: str, out: list[Violation]) -> None:
    if conf is None:
        return
    _validate_load_balancer(out, f"{path}.loadBalancer", conf.load_balancer)
    locality = conf.locality_awareness
    if locality is not None:
        at = f"{path}.localityAwareness"
        _validate_local_zone(out, f"{at}.localZone", locality.local_zone)
        _validate_cross_zone(out, f"{at}.crossZone", locality.cross_zone)


def _validate_lists(spec: PolicySpec[Any], out: list[Violation]) -> None:
    if not spec.to:
        out.append(Violation("spec.to", "needs at least one item"))


KIND = register(
    PolicyKind(
        name="MeshLoadBalancingStrategy",
        cls=MeshLoadBalancingStrategy,
        plural="meshloadbalancingstrategies",
        conf_type=Conf,
        top_kinds=(MESH, MESH_SUBSET, MESH_GATEWAY, MESH_SERVICE, MESH_SERVICE_SUBSET),
        to_kinds=(MESH, MESH_SERVICE),
        validate_conf=_validate_conf,
        validate_lists=_validate_lists,
        gateway_listener_tags=True,
        order=3,
    )
)


def _load_balancer_json(rule: Rule | None) -> Any:
    return None if rule is None else rule.conf.get("loadBalancer")


def _affinity_json(rule: Rule | None) -> bool:
    local = ((rule.conf.get("localityAwareness") or {}) if rule is not None else {}).get(
        "localZone"
    )
    return bool(isinstance(local, dict) and local.get("affinityTags"))


class MeshLoadBalancingStrategyPlugin(PolicyPlugin):
    kind = KIND

    # The hooks read ``loadBalancer`` and (clusters) whether affinity tags are given, so only
    # they key the shared outbound listeners and clusters; the rest of localityAwareness
    # shapes ClusterLoadAssignments, keyed by ``locality_aware.LocalityShape``.
    def outbound_listener_input(self, policies: KindPolicies, rule: Rule | None) -> Any:
        lb = _load_balancer_json(rule)
        if not isinstance(lb, dict) or lb.get("type") not in ("RingHash", "Maglev"):
            return None
        return lb

    def outbound_cluster_input(self, policies: KindPolicies, rule: Rule | None) -> Any:
        return [_load_balancer_json(rule), _affinity_json(rule)]

    def outbound_cluster(
        self, cluster: cluster_pb2.Cluster, policies: KindPolicies, service: str, protocol: str
    ) -> None:
        conf: Conf | None = policies.to_conf(service_element(service))
        if conf is None:
            return
        if uses_locality_weights(conf.locality_awareness):
            cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
        if conf.load_balancer is not None:
            configure_cluster(cluster, conf.load_balancer)

    def outbound_listener(
        self, listener: listener_pb2.Listener, policies: KindPolicies, service: str, protocol: str
    ) -> None:
        conf: Conf | None = policies.to_conf(service_element(service))
        found = hash_policies(conf.load_balancer if conf is not None else None)
        if not found:
            return
        generated = [route_hash_policy(policy) for policy in found]

        def add(manager: Any) -> None:
            for host in manager.route_config.virtual_hosts:
                for route in host.routes:
                    # Kuma fails the whole proxy on a non-forwarding route; such a route
                    # (a redirect) balances nothing, so it is left as it is.
                    if route.HasField("route"):
                        route.route.hash_policy.extend(generated)

        for chain in listener.filter_chains:
            update_hcm(chain, add)

    def egress_cluster(
        self, cluster: cluster_pb2.Cluster, policies: KindPolicies, zone: str
    ) -> None:
        """Kuma's ``configureEgress``: the rule for every client (Kuma's ``computeFrom``,
        the Mesh element) shapes the localities of the endpoints the cluster holds; the load
        balancer itself is not set at the egress."""
        # locality_aware imports this module: import it when used.
        from .egress import EGRESS_INBOUND
        from .locality_aware import egress_shape, shape_load_assignment

        rules = policies.from_rules.get(EGRESS_INBOUND)
        conf: Conf | None = policies.conf(rules.compute({})) if rules is not None else None
        shape = egress_shape(conf.locality_awareness, zone) if conf is not None else None
        if shape is not None:
            cluster.load_assignment.CopyFrom(shape_load_assignment(cluster.load_assignment, shape))


PLUGIN = register_plugin(MeshLoadBalancingStrategyPlugin())
