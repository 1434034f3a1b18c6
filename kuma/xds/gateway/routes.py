"""A builtin gateway listener's route table from the MeshHTTPRoutes targeting its MeshGateway
(Kuma: meshhttproute ``gateway_routes.go`` ``sortRulesToHosts``/``generateEnvoyRouteEntries``,
runtime/gateway ``HandlePrefixMatchesAndPopulatePolicies`` and ``route/sorter.go``).

* A route's ``to`` items name hostnames (none: ``*``). Per listener hostname, each rule
  hostname that overlaps it gives a virtual host: the more specific of the two names. A virtual
  host gets the rules of every rule hostname that overlaps it, except a more specific rule
  hostname that has a virtual host of its own.
* Rules with the same hostnames are merged by matches as a sidecar's are
  (:func:`kuma.policies.meshhttproute.order.merge_rules`); each match of a rule is one entry
  named by the rule's ``HashMatches``.
* A ``PathPrefix`` match becomes a prefix with a trailing ``/`` (whole path segments) plus the
  exact path, unless an exact entry for that path exists (none for the root prefix).
* Entries are sorted by Kuma's gateway sorter: exact, then prefix, then regex paths, longer
  first; a method first; more headers, then more query parameters first; then by path.

Filters: :mod:`.route_action`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cmp_to_key
from typing import NamedTuple, TypeVar

import msgspec

from kuma.policies.backendref import BACKEND_KINDS, weight_of
from kuma.policies.meshhttproute.api import (
    EXACT,
    PATH_PREFIX,
    REGULAR_EXPRESSION,
    Filter,
    Match,
    MeshHTTPRoute,
    Rule,
    To,
)
from kuma.policies.meshhttproute.envoy import backend_of
from kuma.policies.meshhttproute.order import hash_matches, merge_rules
from kuma.policies.meshtcproute import MeshTCPRoute
from kuma.resources.model import MESH_GATEWAY, GatewayListener, MeshGateway, Policy

from .hostnames import WILDCARD, contains, exactness_key, overlap

#: (service, subset tags) and weight: one weighted cluster of a route.
Backend = tuple[tuple[str, tuple[tuple[str, str], ...]], int]


class Entry(NamedTuple):
    """One Envoy route: its path (one of exact, prefix, regex), the rest of its match, its
    weighted backends and its name (the rule's ``HashMatches``)."""

    exact: str
    prefix: str
    regex: str
    match: Match
    backends: tuple[Backend, ...]
    name: str
    filters: tuple[Filter, ...] = ()


class VirtualHost(NamedTuple):
    hostname: str
    entries: tuple[Entry, ...]


RouteT = TypeVar("RouteT", MeshHTTPRoute, MeshTCPRoute)


def targeting(kind: type[RouteT], gateway: MeshGateway, routes: Iterable[Policy]) -> list[RouteT]:
    """The routes of ``kind`` whose top-level targetRef is this MeshGateway (any listener),
    in Kuma's order (the mesh's lists are kept in that order)."""
    return [
        route
        for route in routes
        if isinstance(route, kind)
        and route.spec.target_ref.kind == MESH_GATEWAY
        and route.spec.target_ref.name == gateway.name
    ]


def tcp_backends(routes: Iterable[MeshTCPRoute], listener: GatewayListener) -> list[Backend]:
    """The weighted backends of a TCP listener: every ``to`` item's rule (Kuma's
    ``To.GetDefault``) of the MeshTCPRoutes (targeting its MeshGateway) that select it."""
    return [
        (backend_of(ref), weight_of(ref))
        for route in routes
        if _selects_listener(route, listener)
        for item in route.spec.to
        for ref in item.default.default.backend_refs or ()
        if ref.kind in BACKEND_KINDS
    ]


def _selects_listener(route: MeshHTTPRoute | MeshTCPRoute, listener: GatewayListener) -> bool:
    # A targetRef's tags narrow it to the listeners carrying them.
    tags = route.spec.target_ref.tags
    return all(listener.tags.get(key) == value for key, value in tags.items())


def _rules_by_hostname(
    routes: Sequence[MeshHTTPRoute], listener: GatewayListener
) -> dict[str, list[Rule]]:
    """Rule hostname → the merged rules of the ``to`` items naming it, hostnames in the order
    they first appear."""
    items: dict[tuple[str, ...], list[To]] = {}
    for route in routes:
        if _selects_listener(route, listener):
            for item in route.spec.to:
                items.setdefault(item.hostnames or (WILDCARD,), []).append(item)
    by_hostname: dict[str, list[Rule]] = {}
    for hostnames, group in items.items():
        documents = [msgspec.to_builtins(rule) for item in group for rule in item.default.rules]
        rules = merge_rules(documents)
        for hostname in hostnames:
            by_hostname.setdefault(hostname, []).extend(rules)
    return by_hostname


def virtual_hosts(listener: GatewayListener, routes: Sequence[MeshHTTPRoute]) -> list[VirtualHost]:
    """The virtual hosts of one listener (one hostname of a port)."""
    own = listener.effective_hostname
    by_hostname = _rules_by_hostname(routes, listener)
    matches: dict[str, None] = {}
    for hostname in by_hostname:
        if overlap(own, hostname):
            matches[own if contains(hostname, own) else hostname] = None
    hosts = []
    for match in matches:
        # A more specific rule hostname with a virtual host of its own keeps its rules there.
        chosen = [
            hostname
            for hostname in by_hostname
            if overlap(match, hostname) and (hostname not in matches or contains(hostname, match))
        ]
        chosen.sort(key=exactness_key)
        rules = [rule for hostname in chosen for rule in by_hostname[hostname]]
        hosts.append(VirtualHost(match, tuple(_sorted(_expand(_entries(rules))))))
    if not hosts:
        hosts.append(VirtualHost(own, ()))
    return hosts


def _entries(rules: Iterable[Rule]) -> list[Entry]:
    entries = []
    for rule in rules:
        refs = rule.default.backend_refs or ()
        backends = tuple(
            (backend_of(ref), weight_of(ref)) for ref in refs if ref.kind in BACKEND_KINDS
        )
        name = hash_matches(msgspec.to_builtins(rule.matches))
        filters = rule.default.filters or ()
        for match in rule.matches:
            path = match.path
            if path is None:  # Envoy needs a path match: any path
                entries.append(Entry("", "/", "", match, backends, name, filters))
            elif path.type == EXACT:
                entries.append(Entry(path.value, "", "", match, backends, name, filters))
            elif path.type == PATH_PREFIX:
                entries.append(Entry("", path.value, "", match, backends, name, filters))
            elif path.type == REGULAR_EXPRESSION:
                entries.append(Entry("", "", path.value, match, backends, name, filters))
    return entries


def _expand(entries: list[Entry]) -> list[Entry]:
    """Prefixes match whole path segments: ``/a`` becomes the prefix ``/a/`` and the exact
    path ``/a`` (unless an exact entry for it exists; never for ``/``)."""
    exact = {e.exact for e in entries if e.exact}
    result = [e for e in entries if not e.prefix]
    for entry in entries:
        if not entry.prefix:
            continue
        path = entry.prefix.rstrip("/")
        result.append(entry._replace(prefix=path + "/"))
        if path not in exact and path:
            result.append(entry._replace(prefix="", exact=path))
    return result


def _more_specific(a: Entry, b: Entry) -> bool:
    """Kuma's ``isMoreSpecific``."""
    for kind, (x, y) in enumerate(((a.exact, b.exact), (a.prefix, b.prefix), (a.regex, b.regex))):
        if x or y:
            if not y:
                return True
            if not x:
                return False
            if len(x) != len(y):
                return len(x) > len(y)
            if kind == 2:  # Kuma falls through: regexes of one length are equal
                return False
    if (a.match.method is None) != (b.match.method is None):
        return a.match.method is not None
    for x_count, y_count in (
        (len(a.match.headers), len(b.match.headers)),
        (len(a.match.query_params), len(b.match.query_params)),
    ):
        if x_count != y_count:
            return x_count > y_count
    return a.exact + a.prefix + a.regex < b.exact + b.prefix + b.regex


def _sorted(entries: list[Entry]) -> list[Entry]:
    def compare(a: Entry, b: Entry) -> int:
        return -1 if _more_specific(a, b) else 1 if _more_specific(b, a) else 0

    deduplicated = list(dict.fromkeys(entries))
    return sorted(deduplicated, key=cmp_to_key(compare))
