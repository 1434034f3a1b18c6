"""Kuma's rules (``pkg/plugins/policies/core/rules``): from an ordered list of ``to`` or
``from`` items to the configuration that applies to a destination or a client.

Each item's targetRef is a *subset* of the mesh (tags, possibly negated). ``build_rules``
turns the list into rules, one per subset that can be told apart, each holding the merge of
every item that covers it (items later in the list win, field by field); ``Rules.compute``
picks the first rule whose subset contains an element (a destination's or client's tags).
Without negations and with at most one tag key (``to`` lists: Mesh or MeshService) the rules
are the distinct subsets, most tags first; otherwise every combination of the tags of each
maximal group of intersecting subsets, with negations, most positive tags first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kuma.resources.model import (
    MESH,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    SERVICE_TAG,
    TargetRef,
)

from .merge import merge_confs


@dataclass(frozen=True, order=True)
class Tag:
    key: str
    value: str
    negated: bool = False


Subset = tuple[Tag, ...]
Element = Mapping[str, str]


def as_subset(ref: TargetRef) -> Subset:
    """Kuma's asSubset: the tags a targetRef stands for (ValueError for other kinds)."""
    if ref.kind == MESH:
        return ()
    if ref.kind == MESH_SUBSET:
        return tuple(Tag(k, v) for k, v in ref.tags.items())
    if ref.kind == MESH_SERVICE:
        return (Tag(SERVICE_TAG, ref.name),)
    if ref.kind == MESH_SERVICE_SUBSET:
        return (Tag(SERVICE_TAG, ref.name), *(Tag(k, v) for k, v in ref.tags.items()))
    raise ValueError(f"can't represent {ref.kind} as tags")


def contains_element(subset: Subset, element: Element) -> bool:
    """Kuma's Subset.ContainsElement."""
    if not subset:
        return True
    if not element:
        return False
    overlap = False
    for tag in subset:
        other = element.get(tag.key)
        if other is not None:
            overlap = True
            if (tag.value == other) == tag.negated:
                return False
        elif not tag.negated:
            return False
    if not overlap and not any(not t.negated for t in subset):
        return True
    return overlap


def _tag_subset(t1: Tag, t2: Tag) -> bool:
    if t1.key != t2.key:
        return False
    if t1.negated == t2.negated:
        return t1.value == t2.value
    if t1.negated:
        return t1.value != t2.value
    return False


def is_subset(subset: Subset, other: Subset) -> bool:
    """Kuma's Subset.IsSubset: True if ``other`` is a subset of ``subset``."""
    if not subset:
        return True
    by_key: dict[str, list[Tag]] = {}
    for tag in other:
        by_key.setdefault(tag.key, []).append(tag)
    for tag in subset:
        found = by_key.get(tag.key)
        if found is None:
            return False
        if not all(_tag_subset(tag, o) for o in found):
            return False
    return True


def intersect(subset: Subset, other: Subset) -> bool:
    """Kuma's Subset.Intersect: some element belongs to both."""
    if not subset or not other:
        return True
    positive: dict[str, list[Tag]] = {}
    for tag in other:
        if not tag.negated:
            positive.setdefault(tag.key, []).append(tag)
    for tag in subset:
        if tag.negated:
            continue
        for o in positive.get(tag.key, ()):
            if o != tag:
                return False
    return True


@dataclass(frozen=True)
class Item:
    """One ``to``/``from`` entry of a policy, with the policy it came from."""

    target_ref: TargetRef
    #: The entry's ``default`` as a JSON-shaped document (None: no default).
    conf: Mapping[str, Any] | None
    origin: str


class Rule:
    """One subset and the merge of the items that cover it. The merge is computed on first
    use and kept (rules are shared by every proxy with the same policies), as is the typed
    configuration a policy kind makes of it."""

    __slots__ = ("_appends", "_conf", "_confs", "origins", "outbound_parts", "subset", "typed")

    def __init__(
        self,
        subset: Subset,
        confs: Sequence[Mapping[str, Any]],
        origins: tuple[str, ...],
        appends: frozenset[str] = frozenset(),
    ) -> None:
        self.subset = subset
        #: Names of the policies that contributed, sorted.
        self.origins = origins
        self._confs = confs
        self._appends = appends
        self._conf: Mapping[str, Any] | None = None
        #: The kind's typed ``Conf`` of :attr:`conf`, set by whoever converts it first.
        self.typed: Any = None
        #: What the rule gives an outbound's policy fingerprint (``plugin._rule_parts``).
        self.outbound_parts: Any = None

    @property
    def conf(self) -> Mapping[str, Any]:
        """The merged configuration (JSON-shaped)."""
        if self._conf is None:
            self._conf = merge_confs(self._confs, self._appends)
        return self._conf


class Rules(tuple[Rule, ...]):
    """Rules in the order they are tried."""

    def compute(self, element: Element) -> Rule | None:
        for rule in self:
            if contains_element(rule.subset, element):
                return rule
        return None


def _create_rule(subset: Subset, items: Sequence[Item], appends: frozenset[str]) -> Rule | None:
    confs: list[Mapping[str, Any]] = []
    origins: set[str] = set()
    for item in items:
        if is_subset(as_subset(item.target_ref), subset):
            confs.append(item.conf or {})
            origins.add(item.origin)
    if not confs:
        return None
    return Rule(subset, confs, tuple(sorted(origins)), appends)


def _canonical(subset: Subset) -> tuple[Tag, ...]:
    return tuple(sorted(subset, key=lambda t: (t.key, t.value, t.negated)))


def _cliques(nodes: int, edges: Sequence[set[int]]) -> list[list[int]]:
    """Every maximal clique (Bron-Kerbosch with pivoting)."""
    found: list[list[int]] = []

    def expand(r: list[int], p: set[int], x: set[int]) -> None:
        if not p and not x:
            found.append(sorted(r))
            return
        pivot = max(p | x, key=lambda n: len(edges[n] & p))
        for node in sorted(p - edges[pivot]):
            expand([*r, node], p & edges[node], x & edges[node])
            p = p - {node}
            x = x | {node}

    expand([], set(range(nodes)), set())
    return found


def _combinations(tags: Sequence[Tag]) -> Iterator[Subset]:
    """Kuma's SubsetIter: per key, one positive value or every value negated."""
    keys: list[str] = []
    values: dict[str, list[str]] = {}
    for tag in tags:
        if tag.key not in values:
            keys.append(tag.key)
            values[tag.key] = []
        if tag.value not in values[tag.key]:
            values[tag.key].append(tag.value)
    index = [0] * len(keys)

    def current() -> Subset:
        out: list[Tag] = []
        for i, key in enumerate(keys):
            vals = values[key]
            if index[i] == len(vals):
                out.extend(Tag(key, v, True) for v in vals)
            else:
                out.append(Tag(key, vals[len(vals) - index[i] - 1]))
        return tuple(out)

    while True:
        for i, key in enumerate(keys):
            index[i] += 1
            if index[i] < len(values[key]) + 1:
                yield current()
                break
            index[i] = 0
        else:
            yield current()
            return


def build_rules(
    items: Sequence[Item], *, with_negations: bool, appends: frozenset[str] = frozenset()
) -> Rules:
    """Kuma's BuildRules over ``items`` (already in merge order)."""
    subsets = [as_subset(item.target_ref) for item in items]
    keys = {tag.key for subset in subsets for tag in subset}
    rules: list[Rule] = []
    if not with_negations and len(keys) <= 1:
        seen: set[tuple[Tag, ...]] = set()
        for subset in subsets:
            canonical = _canonical(subset)
            if canonical in seen:
                continue
            seen.add(canonical)
            rule = _create_rule(canonical, items, appends)
            if rule is not None:
                rules.append(rule)
        rules.sort(key=lambda r: -len(r.subset))
        return Rules(rules)
    edges = [
        {j for j in range(len(subsets)) if j != i and intersect(subsets[i], subsets[j])}
        for i in range(len(subsets))
    ]
    groups = _cliques(len(subsets), edges)
    groups.sort(key=lambda g: ":".join(str(n) for n in g), reverse=True)
    for group in groups:
        tags = sorted(
            {tag for node in group for tag in subsets[node]}, key=lambda t: (t.key, t.value)
        )
        for subset in _combinations(tags):
            rule = _create_rule(subset, items, appends)
            if rule is not None:
                rules.append(rule)
    rules.sort(key=lambda r: -sum(1 for t in r.subset if not t.negated))
    return Rules(rules)
