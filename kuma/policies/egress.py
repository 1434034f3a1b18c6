"""Which policies a ZoneEgress applies to an ExternalService it serves, and applying them
(Kuma v2.7 ``pkg/plugins/policies/core/matchers/egress.go`` ``EgressMatchedPolicies``, and
the ZoneEgress branch of each kind's plugin ``Apply``).

The egress is one proxy for every client, so the policies that count are those whose
top-level targetRef selects the external service (Kuma's ``serviceSelectedByTargetRef``:
``Mesh``, ``MeshSubset``, ``MeshService``, ``MeshServiceSubset``; ``proxyTypes`` is not read),
in Kuma's order, and their ``from`` rules (the clients). For kinds with both ``from`` and
``to`` (MeshFaultInjection) Kuma also takes ``from``.

The service is matched by its name alone: Kuma's egress proxy builder
(``pkg/xds/sync/egress_proxy_builder.go``) first matches each ExternalService's tags, then
matches again, under the same key, every service of the egress's endpoint map with only
``kuma.io/service``; every ExternalService reachable from the zone is in that map, so the
second match is the one its plugins read (a MeshSubset on ``kuma.io/protocol`` does not
select an external service at the egress).

In Kuma v2.7.29 the plugins with a ZoneEgress branch for ExternalServices are
MeshFaultInjection, MeshRateLimit and MeshTrafficPermission (and MeshLoadBalancingStrategy,
which only sets localities of zone-tagged endpoints, not built here); the others (MeshTimeout,
MeshCircuitBreaker, MeshHealthCheck, MeshRetry, MeshAccessLog, the routes) leave the egress
as the generator built it. A kind takes part by overriding ``PolicyPlugin.egress_chain``;
MeshTrafficPermission's RBAC is the generator's (``kuma/xds/generate/zone_egress.py``),
because it applies (denying everyone) also when no permission selects the service.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from envoy.config.listener.v3 import listener_components_pb2

from kuma.resources.model import SERVICE_TAG, Policy, TargetRef
from kuma.resources.policy import POLICY_KINDS

from .matching import EMPTY, InboundKey, KindPolicies, ProxyPolicies, _matches, _rules, _selector
from .matching import ordered as kuma_order
from .plugin import PLUGINS, PolicyPlugin

#: The egress's one "inbound" under which its from-rules are keyed (Kuma: the empty key).
EGRESS_INBOUND: InboundKey = ("", 0)
MTP = "MeshTrafficPermission"


def _takes_part(plugin: PolicyPlugin) -> bool:
    return type(plugin).egress_chain is not PolicyPlugin.egress_chain


def egress_kinds() -> frozenset[str]:
    """The kinds whose policies shape an egress's chains (plugins are registered on import)."""
    return frozenset({MTP, *(p.kind.name for p in PLUGINS if _takes_part(p))})


def selects_service(ref: TargetRef, service: str) -> bool:
    """Kuma's ``serviceSelectedByTargetRef`` for an external service at the egress."""
    selector = _selector(ref)
    return selector is not None and _matches(selector, {SERVICE_TAG: service})


def egress_policies(
    service: str, policies_by_kind: Mapping[str, Sequence[Policy]]
) -> ProxyPolicies:
    """The egress kinds' policies that select ``service`` and their from-rules, keyed by
    :data:`EGRESS_INBOUND`; :data:`kuma.policies.EMPTY` when none selects it."""
    found: dict[str, KindPolicies] = {}
    for name in egress_kinds():
        kind = POLICY_KINDS.get(name)
        policies = policies_by_kind.get(name, ())
        if kind is None or not policies:
            continue
        matched = tuple(
            p for p in kuma_order(policies) if selects_service(p.spec.target_ref, service)
        )
        if matched:
            from_rules = {EGRESS_INBOUND: _rules(kind, matched, "from")}
            found[name] = KindPolicies(kind, matched, _rules(kind, (), "to"), from_rules)
    return ProxyPolicies(found) if found else EMPTY


def selects_any(policy: Policy, services: Iterable[str]) -> bool:
    """Whether ``policy`` is one an egress serving ``services`` reads."""
    if policy.TYPE not in egress_kinds():
        return False
    return any(selects_service(policy.spec.target_ref, s) for s in services)


def apply_egress_chain(
    chain: listener_components_pb2.FilterChain, policies: ProxyPolicies, protocol: str
) -> None:
    """Every taking-part kind's change to one external service's chain, in Kuma's plugin
    order (the generator puts MeshTrafficPermission's RBAC in front afterwards)."""
    for plugin in PLUGINS:
        matched = policies.get(plugin.kind.name)
        if matched is not None:
            plugin.egress_chain(chain, matched, protocol)
