"""Which policies apply to a proxy, in which order, and the rules they make for it (Kuma's
``pkg/plugins/policies/core/matchers/dataplane.go``).

A policy's top-level targetRef selects inbounds of a Dataplane by their tags (``Mesh``: all,
``MeshSubset``: by tags, ``MeshService``: by ``kuma.io/service``, ``MeshServiceSubset``: both)
and ``proxyTypes`` restricts Mesh/MeshSubset to sidecars or gateways; a delegated gateway is
selected by its gateway tags. A proxy is selected if any inbound is (or its gateway).

Selected policies are ordered by targetRef kind (Mesh first, then MeshSubset, MeshGateway,
MeshService, MeshServiceSubset, MeshHTTPRoute), then by name *descending*: the merge goes in
that order and later wins, so the more specific kind wins and, for one kind, the policy whose
name sorts first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from kuma.resources.model import (
    KIND_ORDER,
    MESH,
    MESH_HTTP_ROUTE,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    SERVICE_TAG,
    Dataplane,
    Policy,
    PolicyItem,
    TargetRef,
)
from kuma.resources.policy import POLICY_KINDS, PolicyKind

from .rules import Element, Item, Rule, Rules, build_rules

#: An inbound as Kuma keys from-rules: (dataplane IP, dataplane port).
InboundKey = tuple[str, int]

SIDECAR = "Sidecar"
GATEWAY = "Gateway"


def proxy_type(dataplane: Dataplane) -> str:
    return GATEWAY if dataplane.is_gateway else SIDECAR


def _matches(selector: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    """Kuma's TagSelector.Matches (``*`` matches any value of a present tag)."""
    for key, value in selector.items():
        actual = tags.get(key)
        if actual is None or (value != "*" and actual != value):
            return False
    return True


def _selector(ref: TargetRef) -> dict[str, str] | None:
    if ref.kind in (MESH, MESH_SUBSET):
        return dict(ref.tags) if ref.kind == MESH_SUBSET else {}
    if ref.kind == MESH_SERVICE:
        return {SERVICE_TAG: ref.name}
    if ref.kind == MESH_SERVICE_SUBSET:
        return {SERVICE_TAG: ref.name, **ref.tags}
    return None  # MeshGateway (builtin gateways are not generated), MeshHTTPRoute, unknown


def selected_inbounds(
    ref: TargetRef, dataplane: Dataplane, routes: Mapping[str, Policy] | None = None
) -> tuple[list[InboundKey], bool]:
    """(the inbounds the targetRef selects, whether it selects the delegated gateway)."""
    if ref.kind == MESH_HTTP_ROUTE:
        route = (routes or {}).get(ref.name)
        if route is None:
            return [], False
        return selected_inbounds(route.spec.target_ref, dataplane, None)
    selector = _selector(ref)
    if selector is None:
        return [], False
    restricted = ref.kind in (MESH, MESH_SUBSET) and ref.proxy_types
    if restricted and proxy_type(dataplane) not in ref.proxy_types:
        return [], False
    networking = dataplane.networking
    if networking is None:
        return [], False
    inbounds = [
        (inbound.effective_address(networking), inbound.port)
        for inbound in networking.inbound
        if _matches(selector, inbound.tags)
    ]
    gateway = networking.gateway
    delegated = (
        gateway is not None and gateway.type == "DELEGATED" and _matches(selector, gateway.tags)
    )
    return inbounds, delegated


def selects(
    policy: Policy, dataplane: Dataplane, routes: Mapping[str, Policy] | None = None
) -> bool:
    inbounds, delegated = selected_inbounds(policy.spec.target_ref, dataplane, routes)
    return bool(inbounds) or delegated


def ordered(policies: Iterable[Policy]) -> list[Policy]:
    """Kuma's ByTargetRef order: kind specificity, then name descending."""
    by_name = sorted(policies, key=lambda p: p.name, reverse=True)
    return sorted(by_name, key=lambda p: KIND_ORDER.get(p.spec.target_ref.kind, 0))


def _as_item(item: PolicyItem[Any], origin: str) -> Item:
    conf = item.default
    document = msgspec.to_builtins(conf) if conf is not None else None
    return Item(item.target_ref, document, origin)


@dataclass
class KindPolicies:
    """One kind's policies for one proxy and the rules they make."""

    kind: PolicyKind
    #: The policies that select the proxy, in merge order.
    policies: tuple[Policy, ...]
    to_rules: Rules
    #: Per selected inbound.
    from_rules: dict[InboundKey, Rules]
    _typed: dict[int, Any] = field(default_factory=dict)

    def conf(self, rule: Rule | None) -> Any:
        """The rule's merged configuration as the kind's typed ``Conf`` (None for no rule)."""
        if rule is None:
            return None
        key = id(rule)
        typed = self._typed.get(key)
        if typed is None:
            typed = self._typed[key] = msgspec.convert(rule.conf, self.kind.conf_type)
        return typed

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
) -> KindPolicies | None:
    """The policies of ``kind`` that select ``dataplane`` and their rules; None if none."""
    matched: list[Policy] = []
    by_inbound: dict[InboundKey, list[Policy]] = {}
    for policy in policies:
        inbounds, delegated = selected_inbounds(policy.spec.target_ref, dataplane, routes)
        if not inbounds and not delegated:
            continue
        matched.append(policy)
        for key in inbounds:
            by_inbound.setdefault(key, []).append(policy)
    if not matched:
        return None
    matched = ordered(matched)
    to_items = [_as_item(item, p.name) for p in matched for item in p.spec.to]
    to_rules = build_rules(to_items, with_negations=False, appends=kind.appends)
    from_rules = {
        key: build_rules(
            [_as_item(item, p.name) for p in ordered(group) for item in p.spec.from_],
            with_negations=True,
            appends=kind.appends,
        )
        for key, group in by_inbound.items()
    }
    return KindPolicies(kind, tuple(matched), to_rules, from_rules)


class ProxyPolicies:
    """Every kind's matched policies for one proxy (empty: no policy selects it)."""

    __slots__ = ("by_kind",)

    def __init__(self, by_kind: Mapping[str, KindPolicies] | None = None) -> None:
        self.by_kind: dict[str, KindPolicies] = dict(by_kind or {})

    def get(self, kind: str) -> KindPolicies | None:
        return self.by_kind.get(kind)

    def __bool__(self) -> bool:
        return bool(self.by_kind)


EMPTY = ProxyPolicies()


def resolve(
    dataplane: Dataplane, policies_by_kind: Mapping[str, Sequence[Policy]]
) -> ProxyPolicies:
    """Match every kind's policies of the proxy's mesh against its Dataplane."""
    routes = {p.name: p for p in policies_by_kind.get("MeshHTTPRoute", ())}
    found: dict[str, KindPolicies] = {}
    for type_name, policies in policies_by_kind.items():
        kind = POLICY_KINDS.get(type_name)
        if kind is None or not policies:
            continue
        matched = match_kind(kind, policies, dataplane, routes)
        if matched is not None:
            found[type_name] = matched
    return ProxyPolicies(found) if found else EMPTY
