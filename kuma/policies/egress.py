"""Which policies a ZoneEgress applies to an ExternalService it serves, and applying them
(Kuma v2.7 ``pkg/plugins/policies/core/matchers/egress.go`` ``EgressMatchedPolicies``, and
the ZoneEgress branch of each kind's plugin ``Apply``).

The egress is one proxy for every client, so the policies that count are those whose
top-level targetRef selects the external service (Kuma's ``serviceSelectedByTargetRef``:
``Mesh``, ``MeshSubset``, ``MeshService``, ``MeshServiceSubset``; ``proxyTypes`` is not read),
in Kuma's order, and their ``from`` rules (the clients). For kinds with both ``from`` and
``to`` (MeshFaultInjection) Kuma also takes ``from``.

:func:`egress_rules` matches by the tags it is given, as Kuma's matcher does; the egress
gives it the service's name alone (:func:`service_tags`): Kuma's egress proxy builder
(``pkg/xds/sync/egress_proxy_builder.go``) first matches each ExternalService's tags, then
matches again, under the same key, every service of the egress's endpoint map with only
``kuma.io/service``; every ExternalService reachable from the zone is in that map, so the
second match is the one its plugins read (a MeshSubset on ``kuma.io/protocol`` does not
select an external service at the egress).

A kind with ``to`` only (MeshLoadBalancingStrategy) is matched by its ``to`` items instead,
each turned into a ``from`` item under its policy's top-level targetRef (Kuma's
``processToRules``).

In Kuma v2.7.29 the plugins with a ZoneEgress branch for ExternalServices are
MeshFaultInjection, MeshRateLimit, MeshLoadBalancingStrategy (the localities of the
endpoints the egress's cluster holds) and MeshTrafficPermission; the others (MeshTimeout,
MeshCircuitBreaker, MeshHealthCheck, MeshRetry, MeshAccessLog, the routes) leave the egress
as the generator built it. A kind takes part by overriding ``PolicyPlugin.egress_chain`` or
``egress_cluster``; MeshTrafficPermission's RBAC is the generator's
(``kuma/xds/generate/zone_egress.py``), because it applies (denying everyone) also when no
permission selects the service.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2

from kuma.resources.model import SERVICE_TAG, Policy, TargetRef
from kuma.resources.policy import POLICY_KINDS, PolicyKind

from .matching import EMPTY, InboundKey, KindPolicies, ProxyPolicies, _as_item, _rules
from .matching import ordered as kuma_order
from .plugin import PLUGINS, PolicyPlugin
from .rules import Item, Rules, build_rules
from .selection import selector_of, tags_match

#: The egress's one "inbound" under which its from-rules are keyed (Kuma: the empty key).
EGRESS_INBOUND: InboundKey = ("", 0)
MTP = "MeshTrafficPermission"


def _takes_part(plugin: PolicyPlugin) -> bool:
    cls = type(plugin)
    return any(
        getattr(cls, hook) is not getattr(PolicyPlugin, hook)
        for hook in ("egress_chain", "egress_cluster")
    )


#: (plugins registered when computed, the kinds): plugins register on import, once.
_KINDS: tuple[int, frozenset[str]] = (-1, frozenset())


def egress_kinds() -> frozenset[str]:
    """The kinds whose policies shape an egress's chains."""
    global _KINDS
    if _KINDS[0] != len(PLUGINS):
        _KINDS = (len(PLUGINS), frozenset({MTP, *(p.kind.name for p in PLUGINS if _takes_part(p))}))
    return _KINDS[1]


def selects_service(ref: TargetRef, tags: Mapping[str, str]) -> bool:
    """Kuma's ``serviceSelectedByTargetRef``: whether ``ref`` selects an external service
    with ``tags`` at the egress."""
    selector = selector_of(ref)
    return selector is not None and tags_match(selector, tags)


def service_tags(service: str) -> dict[str, str]:
    """The tags an egress matches an external service by (Kuma's second match: see above)."""
    return {SERVICE_TAG: service}


def _selects(kind: PolicyKind, policy: Policy, tags: Mapping[str, str]) -> bool:
    if kind.from_kinds:
        return selects_service(policy.spec.target_ref, tags)
    # A kind with ``to`` only (MeshLoadBalancingStrategy): by the ``to`` items.
    return any(selects_service(item.target_ref, tags) for item in policy.spec.to)


def egress_rules(
    kind: PolicyKind,
    policies: Sequence[Policy],
    tags: Mapping[str, str],
    *,
    presorted: bool = False,
) -> tuple[tuple[Policy, ...], Rules] | None:
    """Kuma's ``EgressMatchedPolicies`` for one kind: the policies selecting an external
    service with ``tags`` (in Kuma's order) and the rules they make for its clients; None when
    none selects it. ``presorted``: ``policies`` are in Kuma's order (``matching.ordered``)."""
    in_order = policies if presorted else kuma_order(policies)
    matched = tuple(p for p in in_order if _selects(kind, p, tags))
    if not matched:
        return None
    if kind.from_kinds:
        return matched, _rules(kind, matched, "from")
    return matched, _to_as_from(kind, matched, tags)


def egress_policies(
    tags: Mapping[str, str],
    policies_by_kind: Mapping[str, Sequence[Policy]],
    *,
    presorted: bool = False,
) -> ProxyPolicies:
    """The egress kinds' policies that select an external service with ``tags`` and their
    from-rules, keyed by :data:`EGRESS_INBOUND`; :data:`kuma.policies.EMPTY` when none does."""
    found: dict[str, KindPolicies] = {}
    for name in egress_kinds():
        kind = POLICY_KINDS.get(name)
        policies = policies_by_kind.get(name, ())
        if kind is None or not policies:
            continue
        result = egress_rules(kind, policies, tags, presorted=presorted)
        if result is not None:
            matched, rules = result
            no_to_rules = _rules(kind, (), "to")
            found[name] = KindPolicies(kind, matched, no_to_rules, {EGRESS_INBOUND: rules})
    return ProxyPolicies(found) if found else EMPTY


def _to_as_from(kind: PolicyKind, policies: Sequence[Policy], tags: Mapping[str, str]) -> Rules:
    """Kuma's ``processToRules``: each ``to`` item selecting the service becomes a ``from``
    item under its policy's top-level targetRef (the egress serves every client), so only a
    policy whose top-level targetRef selects every client (``Mesh``) applies in the end (the
    rule computed for the whole mesh). Kuma lists a policy once per selecting item and takes
    all its selecting items each time; the repeats merge to the same result (no
    MeshLoadBalancingStrategy field appends), so once here."""
    items = [
        Item(policy.spec.target_ref, _as_item(item, policy.name).conf, policy.name)
        for policy in policies
        for item in policy.spec.to
        if selects_service(item.target_ref, tags)
    ]
    return build_rules(items, with_negations=False, appends=kind.appends)


def selects_any(policy: Policy, services: Iterable[str]) -> bool:
    """Whether ``policy`` is one an egress serving ``services`` reads."""
    kind = POLICY_KINDS.get(policy.TYPE)
    if kind is None or policy.TYPE not in egress_kinds():
        return False
    return any(_selects(kind, policy, service_tags(s)) for s in services)


def apply_egress_cluster(cluster: cluster_pb2.Cluster, policies: ProxyPolicies, zone: str) -> None:
    """Every taking-part kind's change to the egress's cluster to one external service."""
    for plugin in PLUGINS:
        matched = policies.get(plugin.kind.name)
        if matched is not None:
            plugin.egress_cluster(cluster, matched, zone)


def apply_egress_chain(
    chain: listener_components_pb2.FilterChain, policies: ProxyPolicies, protocol: str
) -> None:
    """Every taking-part kind's change to one external service's chain, in Kuma's plugin
    order (the generator puts MeshTrafficPermission's RBAC in front afterwards)."""
    for plugin in PLUGINS:
        matched = policies.get(plugin.kind.name)
        if matched is not None:
            plugin.egress_chain(chain, matched, protocol)
