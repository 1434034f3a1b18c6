"""Kuma's merging, ordering and naming of MeshHTTPRoute rules for one service.

* Merging (``mergeValuesByKey`` in Kuma's core/rules/merge.go, then ``Transform``): the rules
  of every policy covering the service, each policy's list reversed, concatenated in merge
  order; rules with equal ``matches`` become one, at the place of the last of them, their
  ``default`` merged as JSON merge patches in order; then the list is reversed. So a later
  policy's rules come first and win for the same matches.
* Ordering (``SortRules``/``CompareMatch``): one route per match, stably sorted: a path match
  before none, Exact before PathPrefix before RegularExpression, longer prefixes and regexes
  first; then with a method before without; then more headers, then more query parameters.
* Naming: a route is named by Kuma's ``HashMatches``, the base64 SHA-256 of its rule's
  ``matches`` as Go's ``encoding/json`` writes them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import cmp_to_key
from typing import Any, NamedTuple

import msgspec

from ..backendref import BackendRef
from ..merge import merge_patch
from .api import EXACT, PATH_PREFIX, REGULAR_EXPRESSION, Filter, Match, PathMatch, Rule


class Route(NamedTuple):
    """Kuma's ``api.Route``: one match of a rule, with the rule's filters and backends."""

    match: Match
    filters: tuple[Filter, ...]
    backend_refs: tuple[BackendRef, ...]
    hash: str


def go_json(document: Any) -> str:
    """``document`` as Go's json.Marshal writes it (compact, HTML characters escaped)."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def _go_match(match: Mapping[str, Any]) -> dict[str, Any]:
    """A match document with Go's field order and omitempty rules."""
    result: dict[str, Any] = {}
    path = match.get("path")
    if path is not None:
        result["path"] = {"value": path.get("value", ""), "type": path.get("type", "")}
    if match.get("method"):
        result["method"] = match["method"]
    queries = match.get("queryParams")
    if queries:
        result["queryParams"] = [
            {"type": q.get("type", ""), "name": q.get("name", ""), "value": q.get("value", "")}
            for q in queries
        ]
    headers = match.get("headers")
    if headers:
        result["headers"] = [
            {
                **({"type": h["type"]} if h.get("type") else {}),
                "name": h.get("name", ""),
                **({"value": h["value"]} if h.get("value") else {}),
            }
            for h in headers
        ]
    return result


def hash_matches(matches: Sequence[Mapping[str, Any]]) -> str:
    """Kuma's ``HashMatches``."""
    text = go_json([_go_match(m) for m in matches])
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


CATCH_ALL = Match(path=PathMatch(value="/", type=PATH_PREFIX))
CATCH_ALL_HASH = hash_matches([{"path": {"value": "/", "type": PATH_PREFIX}}])


def merge_rules(documents: Sequence[Mapping[str, Any]]) -> list[Rule]:
    """The merged rules from the concatenated rule documents (see the module docstring)."""
    entries: list[tuple[str, Any, list[Any]] | None] = []
    for document in documents:
        matches = document.get("matches") or []
        key = go_json([_go_match(m) for m in matches])
        defaults = [document.get("default") or {}]
        for index, entry in enumerate(entries):
            if entry is not None and entry[0] == key:
                defaults = entry[2] + defaults
                entries[index] = None
        entries.append((key, matches, defaults))
    merged: list[Rule] = []
    for entry in entries:
        if entry is None:
            continue
        conf: Any = {}
        for default in entry[2]:
            conf = merge_patch(conf, default)
        merged.append(msgspec.convert({"matches": entry[1], "default": conf}, Rule))
    merged.reverse()
    return merged


_PATH_RANK = {EXACT: 0, PATH_PREFIX: 1, REGULAR_EXPRESSION: 2}


def _compare_path(a: PathMatch | None, b: PathMatch | None) -> int:
    if a is None or b is None:
        return (a is None) - (b is None)
    if a.type == b.type:
        if a.type == EXACT:
            return 0
        return (len(a.value) < len(b.value)) - (len(a.value) > len(b.value))
    rank_a, rank_b = _PATH_RANK.get(a.type, 3), _PATH_RANK.get(b.type, 3)
    return (rank_a > rank_b) - (rank_a < rank_b)


def compare_match(a: Match, b: Match) -> int:
    """Kuma's ``CompareMatch``: negative when ``a`` goes first."""
    found = _compare_path(a.path, b.path)
    if found:
        return found
    if (a.method is None) != (b.method is None):
        return 1 if a.method is None else -1
    for x, y in ((len(a.headers), len(b.headers)), (len(a.query_params), len(b.query_params))):
        if x != y:
            return 1 if x < y else -1
    return 0


def sort_rules(rules: Sequence[Rule]) -> list[Route]:
    """Kuma's ``SortRules``: one route per match of every rule, stably sorted."""
    keyed = [(match, rule) for rule in rules for match in rule.matches]

    def compare(x: tuple[Match, Rule], y: tuple[Match, Rule]) -> int:
        return compare_match(x[0], y[0])

    keyed.sort(key=cmp_to_key(compare))
    return [
        Route(
            match,
            rule.default.filters or (),
            rule.default.backend_refs or (),
            hash_matches(msgspec.to_builtins(rule.matches)),
        )
        for match, rule in keyed
    ]
