"""Which policies apply to a proxy, in which order, and the rules they make for it (Kuma's
``pkg/plugins/policies/core/matchers/dataplane.go``). What a targetRef selects of a proxy is
``selection``.

Selected policies are ordered by targetRef kind (Mesh first, then MeshSubset, MeshGateway,
MeshService, MeshServiceSubset, MeshHTTPRoute), then by name *descending*: the merge goes in
that order and later wins, so the more specific kind wins and, for one kind, the policy whose
name sorts first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from kuma.resources.model import (
    KIND_ORDER,
    MESH,
    MESH_GATEWAY,
    MESH_HTTP_ROUTE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    Dataplane,
    MeshGateway,
    Policy,
    PolicyItem,
    TargetRef,
)
from kuma.resources.policy import POLICY_KINDS, PolicyKind

from .caller_tags import needs_caller_tags
from .rules import Element, Item, Rule, Rules, build_rules

# Re-exported: the plugins and xds key their rules by these.
from .selection import HostKey as HostKey
from .selection import InboundKey as InboundKey
from .selection import SelectedProxy

#: Kuma's ``RuleMatchesHashTag``: the tag of one MeshHTTPRoute rule (its matches' hash).
RULE_MATCHES_HASH_TAG = "__rule-matches-hash__"


def ordered(policies: Iterable[Policy]) -> list[Policy]:
    """Kuma's ByTargetRef order: kind specificity (MeshGateway: fewer listener tags first),
    then name descending."""
    by_name = sorted(policies, key=lambda p: p.name, reverse=True)
    return sorted(by_name, key=_kind_rank)


def _kind_rank(policy: Policy) -> tuple[int, int]:
    ref = policy.spec.target_ref
    return KIND_ORDER.get(ref.kind, 0), len(ref.tags) if ref.kind == MESH_GATEWAY else 0


def _as_item(item: PolicyItem[Any], origin: str) -> Item:
    conf = item.default
    document = msgspec.to_builtins(conf) if conf is not None else None
    return Item(item.target_ref, document, origin)


# Rules depend only on the ordered policies they come from, which many proxies share: they
# are built once per (direction, policies) and kept. Keys are the policies' identities; the
# entry holds the policies themselves, so an identity cannot be reused while it is cached.
_RULES_CACHE_LIMIT = 4096
_rules_cache: dict[tuple[Any, ...], tuple[tuple[Policy, ...], Rules]] = {}


def _rules(
    kind: PolicyKind,
    policies: tuple[Policy, ...],
    direction: str,
    routes: Mapping[str, Policy] | None = None,
) -> Rules:
    """``routes`` (a builtin gateway's ``to`` rules): a policy whose top-level targetRef is a
    MeshHTTPRoute gives its confs to that route's rules only (Kuma's ``buildToList``)."""
    targeted = tuple(
        (routes or {}).get(p.spec.target_ref.name)
        for p in policies
        if routes is not None and p.spec.target_ref.kind == MESH_HTTP_ROUTE
    )
    key = (kind.name, direction, routes is not None, *map(id, policies), *map(id, targeted))
    cached = _rules_cache.get(key)
    if cached is not None:
        return cached[1]
    if routes is not None and direction == "to":
        items = [item for p in policies for item in _route_items(p, routes)]
    else:
        items = [
            _as_item(item, p.name)
            for p in policies
            for item in (p.spec.to if direction == "to" else p.spec.from_)
        ]
    rules = build_rules(items, with_negations=direction == "from", appends=kind.appends)
    if len(_rules_cache) >= _RULES_CACHE_LIMIT:
        _rules_cache.clear()
    # The entry holds what the key's identities name, so none is reused while cached.
    _rules_cache[key] = ((*policies, *(r for r in targeted if r is not None)), rules)
    return rules


def _route_items(policy: Policy, routes: Mapping[str, Policy]) -> list[Item]:
    """A policy's ``to`` items; for a MeshHTTPRoute top-level targetRef, each of them for
    every rule of the route, as the subset of the rule's matches hash (``MeshSubset``, or
    ``MeshServiceSubset`` of the route's ``to`` service)."""
    ref = policy.spec.target_ref
    if ref.kind != MESH_HTTP_ROUTE:
        return [_as_item(item, policy.name) for item in policy.spec.to]
    # The package imports this module.
    from .meshhttproute.api import MeshHTTPRoute
    from .meshhttproute.order import hash_matches

    route = routes.get(ref.name)
    if not isinstance(route, MeshHTTPRoute):  # Kuma: "can't resolve MeshHTTPRoute policy"
        return []

    items: list[Item] = []
    for route_to in route.spec.to:
        for rule in route_to.rules:
            tags = {RULE_MATCHES_HASH_TAG: hash_matches(msgspec.to_builtins(rule.matches))}
            if route_to.target_ref.kind in (MESH, MESH_SUBSET):
                target = TargetRef(kind=MESH_SUBSET, tags=tags)
            else:
                target = TargetRef(
                    kind=MESH_SERVICE_SUBSET, name=route_to.target_ref.name, tags=tags
                )
            items.extend(
                Item(target, _as_item(item, policy.name).conf, policy.name)
                for item in policy.spec.to
            )
    return items


@dataclass
class KindPolicies:
    """One kind's policies for one proxy and the rules they make."""

    kind: PolicyKind
    #: The policies that select the proxy, in merge order.
    policies: tuple[Policy, ...]
    to_rules: Rules
    #: Per selected inbound.
    from_rules: dict[InboundKey, Rules]
    #: The proxy they were matched for (MeshAccessLog's lines name its service and address).
    dataplane: Dataplane | None = None
    #: kuma-dp's access-log pipe from the proxy's node metadata ("": Kuma's fallback path).
    access_log_socket: str = ""
    #: A builtin gateway's: per listener port (as an inbound key), the ``to`` rules of the
    #: policies selecting one of its listeners (Kuma's ``GatewayRules.ToRules.ByListener``).
    listener_to_rules: dict[InboundKey, Rules] | None = None
    #: Per listener hostname (Kuma's ``GatewayRules.ToRules.ByListenerAndHostname``; Kuma
    #: keeps those policies in list order, here in its ByTargetRef order as everywhere).
    host_to_rules: dict[HostKey, Rules] | None = None

    def conf(self, rule: Rule | None) -> Any:
        """The rule's merged configuration as the kind's typed ``Conf`` (None for no rule)."""
        if rule is None:
            return None
        if rule.typed is None:
            rule.typed = msgspec.convert(rule.conf, self.kind.conf_type)
        return rule.typed

    def to_conf(self, element: Element) -> Any:
        return self.conf(self.to_rules.compute(element))

    def from_conf(self, inbound: InboundKey, element: Element) -> Any:
        rules = self.from_rules.get(inbound)
        return None if rules is None else self.conf(rules.compute(element))


def match_kind(
    kind: PolicyKind,
    policies: Iterable[Policy],
    dataplane: Dataplane,
    routes: Mapping[str, Policy] | None = None,
    *,
    presorted: bool = False,
    proxy: SelectedProxy | None = None,
    access_log_socket: str = "",
) -> KindPolicies | None:
    """The policies of ``kind`` that select ``dataplane`` and their rules; None if none.
    ``presorted``: ``policies`` are already in Kuma's order (filtering keeps it)."""
    if proxy is None:
        proxy = SelectedProxy(dataplane)
    if not presorted:
        policies = ordered(policies)
    matched: list[Policy] = []
    by_inbound: dict[InboundKey, list[Policy]] = {}
    by_host: dict[HostKey, list[Policy]] = {}
    for policy in policies:
        if proxy.listeners:
            hosts = proxy.hosts(policy.spec.target_ref, routes or {})
            for host in hosts:
                by_host.setdefault(host, []).append(policy)
            inbounds, delegated = sorted({host[:2] for host in hosts}), False
        else:
            inbounds, delegated = proxy.selected(policy.spec.target_ref, routes or {})
        if not inbounds and not delegated:
            continue
        matched.append(policy)
        for key in inbounds:
            by_inbound.setdefault(key, []).append(policy)
    if not matched:
        return None
    to_rules = _rules(kind, tuple(matched), "to")
    from_rules = {key: _rules(kind, tuple(group), "from") for key, group in by_inbound.items()}
    listener_to_rules = host_to_rules = None
    if proxy.listeners:
        listener_to_rules = {
            key: _rules(kind, tuple(group), "to", routes or {}) for key, group in by_inbound.items()
        }
        host_to_rules = {
            key: _rules(kind, tuple(group), "to", routes or {}) for key, group in by_host.items()
        }
    return KindPolicies(
        kind,
        tuple(matched),
        to_rules,
        from_rules,
        dataplane,
        access_log_socket,
        listener_to_rules,
        host_to_rules,
    )


class ProxyPolicies:
    """Every kind's matched policies for one proxy (empty: no policy selects it), and whether
    its mesh needs the callers' tags on outbound routes (``caller_tags``, a mesh-wide fact:
    the policies that consume them select the callee, not this proxy)."""

    __slots__ = ("by_kind", "caller_tags")

    def __init__(
        self, by_kind: Mapping[str, KindPolicies] | None = None, *, caller_tags: bool = False
    ) -> None:
        self.by_kind: dict[str, KindPolicies] = dict(by_kind or {})
        self.caller_tags = caller_tags

    def get(self, kind: str) -> KindPolicies | None:
        return self.by_kind.get(kind)

    def __bool__(self) -> bool:
        return bool(self.by_kind)


EMPTY = ProxyPolicies()


def resolve(
    dataplane: Dataplane,
    policies_by_kind: Mapping[str, Sequence[Policy]],
    *,
    presorted: bool = False,
    access_log_socket: str = "",
    gateway: MeshGateway | None = None,
) -> ProxyPolicies:
    """Match every kind's policies of the proxy's mesh against its Dataplane (``presorted``:
    each kind's list is already in Kuma's order, see :func:`ordered`); ``gateway``: the
    MeshGateway a builtin gateway Dataplane serves (its listeners are then what is selected)."""
    routes = {p.name: p for p in policies_by_kind.get("MeshHTTPRoute", ())}
    proxy = SelectedProxy(dataplane, gateway)
    found: dict[str, KindPolicies] = {}
    for type_name, policies in policies_by_kind.items():
        kind = POLICY_KINDS.get(type_name)
        if kind is None or not policies:
            continue
        matched = match_kind(
            kind,
            policies,
            dataplane,
            routes,
            presorted=presorted,
            proxy=proxy,
            access_log_socket=access_log_socket,
        )
        if matched is not None:
            found[type_name] = matched
    caller_tags = needs_caller_tags(policies_by_kind)
    return ProxyPolicies(found, caller_tags=caller_tags) if found or caller_tags else EMPTY
