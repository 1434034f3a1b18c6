"""MeshHTTPRoute's Envoy change (Kuma's meshhttproute plugin, ``xds/configurer.go``,
``xds/match.go``, ``xds/filters``): the outbound's route configuration gets one route per
match of the merged rules, in Kuma's order, named by the hash of the rule's matches, plus the
catch-all ``/`` route to the outbound's own destination unless a rule has that exact match;
each route sends to one cluster or to weighted clusters (its ``backendRefs``: services or
subsets of them, each a ``<service>-<hash>`` cluster), with the rule's filters applied.

A backendRef to a service that is not HTTP (http, http2, grpc) drops its route (Kuma's
``MakeHTTPSplit``); a weight of 0 drops the backendRef.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import msgspec
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as route_pb2
from envoy.type.v3 import percent_pb2

from kuma.resources.model import MESH_SERVICE, SERVICE_TAG

from ..backendref import BACKEND_KINDS, BackendRef, weight_of
from ..matching import KindPolicies, ProxyPolicies
from ..plugin import (
    HTTP_PROTOCOLS,
    Backend,
    ClusterNamer,
    OutboundPlan,
    PolicyPlugin,
    register_plugin,
    service_element,
    update_hcm,
)
from ..rules import Rule as PolicyRule
from .api import (
    ABSENT,
    EXACT,
    KIND,
    PATH_PREFIX,
    PREFIX,
    PRESENT,
    REGULAR_EXPRESSION,
    REPLACE_FULL_PATH,
    REPLACE_PREFIX_MATCH,
    REQUEST_HEADER_MODIFIER,
    REQUEST_MIRROR,
    REQUEST_REDIRECT,
    RESPONSE_HEADER_MODIFIER,
    URL_REWRITE,
    Filter,
    HeaderModifier,
    Match,
    PathMatch,
)
from .order import CATCH_ALL, CATCH_ALL_HASH, Route, merge_rules, sort_rules

#: Tags that never narrow a destination (Kuma keeps them out of cluster identity).
_NOT_SUBSET = frozenset({SERVICE_TAG, "kuma.io/mesh"})
REDIRECT_CODES = {
    301: route_pb2.RedirectAction.MOVED_PERMANENTLY,
    302: route_pb2.RedirectAction.FOUND,
    303: route_pb2.RedirectAction.SEE_OTHER,
    307: route_pb2.RedirectAction.TEMPORARY_REDIRECT,
    308: route_pb2.RedirectAction.PERMANENT_REDIRECT,
}


class _Merged:
    """The merged rules of one policy rule (kept on the shared ``Rule``)."""

    __slots__ = ("rules",)

    def __init__(self, rules: list[Any]) -> None:
        self.rules = rules


def merged_rules(rule: PolicyRule) -> list[Any]:
    if not isinstance(rule.typed, _Merged):
        rule.typed = _Merged(merge_rules(rule.conf.get("rules") or ()))
    return rule.typed.rules


def backend_of(ref: BackendRef) -> Backend:
    subset = tuple(sorted((k, v) for k, v in ref.tags.items() if k not in _NOT_SUBSET))
    return ref.name, subset


def prepare_routes(rules: list[Any], tags: Mapping[str, str]) -> list[Route]:
    """Kuma's ``prepareRoutes``: sorted routes, the catch-all appended unless present, a
    path-less match made a ``/`` prefix, no backendRefs meaning the outbound's own
    destination with weight 100."""
    routes = sort_rules(rules)
    if not any(route.match == CATCH_ALL for route in routes):
        routes.append(Route(CATCH_ALL, (), (), CATCH_ALL_HASH))
    own = BackendRef(kind=MESH_SERVICE, name=tags.get(SERVICE_TAG, ""), tags=dict(tags), weight=100)
    prepared = []
    for route in routes:
        match = route.match
        if match.path is None:
            match = msgspec.structs.replace(match, path=CATCH_ALL.path)
        prepared.append(route._replace(match=match, backend_refs=route.backend_refs or (own,)))
    return prepared


def _split(
    refs: tuple[BackendRef, ...], protocol_of: Callable[[str], str], seen: dict[str, str]
) -> list[tuple[Backend, int]] | None:
    """Kuma's ``MakeHTTPSplit``: None when a backend is not an HTTP service."""
    split: list[tuple[Backend, int]] = []
    for ref in refs:
        if ref.kind not in BACKEND_KINDS or weight_of(ref) == 0:
            continue
        protocol = seen.setdefault(ref.name, protocol_of(ref.name))
        if protocol not in HTTP_PROTOCOLS:
            return None
        split.append((backend_of(ref), weight_of(ref)))
    return split


def _path_matches(path: PathMatch) -> list[route_pb2.RouteMatch]:
    if path.type == EXACT:
        return [route_pb2.RouteMatch(path=path.value)]
    if path.type == PATH_PREFIX:
        if path.value == "/":
            return [route_pb2.RouteMatch(prefix="/")]
        trimmed = path.value[:-1] if path.value.endswith("/") else path.value
        return [route_pb2.RouteMatch(path=trimmed), route_pb2.RouteMatch(prefix=trimmed + "/")]
    match = route_pb2.RouteMatch()
    match.safe_regex.regex = path.value
    return [match]


def _add_headers(envoy_match: route_pb2.RouteMatch, match: Match) -> None:
    if match.method is not None:
        header = envoy_match.headers.add(name=":method")
        header.string_match.exact = match.method
    names: set[str] = set()
    for query in match.query_params:
        if query.name in names:
            continue
        names.add(query.name)
        param = envoy_match.query_parameters.add(name=query.name)
        if query.type == REGULAR_EXPRESSION:
            param.string_match.safe_regex.regex = query.value
        else:
            param.string_match.exact = query.value
    names.clear()
    for header_match in match.headers:
        if header_match.name in names:
            continue
        names.add(header_match.name)
        header = envoy_match.headers.add(name=header_match.name)
        kind = header_match.type or EXACT
        if kind == PRESENT or (kind == PREFIX and not header_match.value):
            header.present_match = True
        elif kind == ABSENT:
            header.present_match = False
        elif kind == REGULAR_EXPRESSION:
            header.string_match.safe_regex.regex = header_match.value
        elif kind == PREFIX:
            header.string_match.prefix = header_match.value
        else:
            header.string_match.exact = header_match.value


def _header_options(modifier: HeaderModifier) -> list[base_pb2.HeaderValueOption]:
    options = []
    overwrite = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    append = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    for item in modifier.set or ():
        for index, value in enumerate(item.value.split(",")):
            option = base_pb2.HeaderValueOption(append_action=overwrite if index == 0 else append)
            option.header.key, option.header.value = item.name, value
            options.append(option)
    for item in modifier.add or ():
        for value in item.value.split(","):
            option = base_pb2.HeaderValueOption(append_action=append)
            option.header.key, option.header.value = item.name, value
            options.append(option)
    return options


def _fraction(percentage: int | str) -> percent_pb2.FractionalPercent:
    """Kuma's ``ConvertPercentage``."""
    value = Decimal(str(percentage))
    for scale, denominator in (
        (1, percent_pb2.FractionalPercent.HUNDRED),
        (100, percent_pb2.FractionalPercent.TEN_THOUSAND),
    ):
        if (value * scale) == (value * scale).to_integral_value():
            return percent_pb2.FractionalPercent(
                numerator=int(value * scale), denominator=denominator
            )
    return percent_pb2.FractionalPercent(
        numerator=int(value * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def _apply_filter(
    route: route_pb2.Route, item: Filter, prefix_match: bool, name: ClusterNamer
) -> None:
    if item.type == REQUEST_HEADER_MODIFIER and item.request_header_modifier is not None:
        route.request_headers_to_add.extend(_header_options(item.request_header_modifier))
        route.request_headers_to_remove.extend(item.request_header_modifier.remove or ())
    elif item.type == RESPONSE_HEADER_MODIFIER and item.response_header_modifier is not None:
        route.response_headers_to_add.extend(_header_options(item.response_header_modifier))
        route.response_headers_to_remove.extend(item.response_header_modifier.remove or ())
    elif item.type == REQUEST_REDIRECT and item.request_redirect is not None:
        redirect = item.request_redirect
        action = route_pb2.RedirectAction()
        if redirect.hostname is not None:
            action.host_redirect = redirect.hostname
        if redirect.port is not None:
            action.port_redirect = redirect.port
        if redirect.scheme is not None:
            action.scheme_redirect = redirect.scheme
        _rewrite_path(action, redirect.path, route.match, prefix_match)
        action.response_code = REDIRECT_CODES.get(redirect.status_code or 302, action.FOUND)
        route.redirect.CopyFrom(action)
    elif item.type == URL_REWRITE and item.url_rewrite is not None and route.HasField("route"):
        rewrite = item.url_rewrite
        if rewrite.hostname is not None:
            route.route.host_rewrite_literal = rewrite.hostname
        _rewrite_path(route.route, rewrite.path, route.match, prefix_match)
    elif (
        item.type == REQUEST_MIRROR and item.request_mirror is not None and route.HasField("route")
    ):
        mirror = item.request_mirror
        policy = route.route.request_mirror_policies.add(
            cluster=name(*backend_of(mirror.backend_ref))
        )
        if mirror.percentage is not None:
            policy.runtime_fraction.default_value.CopyFrom(_fraction(mirror.percentage))


def _rewrite_path(target: Any, path: Any, match: route_pb2.RouteMatch, prefix_match: bool) -> None:
    """Kuma's ReplaceFullPath / ReplacePrefixMatch for redirects and URL rewrites."""
    if path is None:
        return
    if path.type == REPLACE_FULL_PATH and path.replace_full_path is not None:
        target.regex_rewrite.pattern.regex = ".*"
        target.regex_rewrite.substitution = path.replace_full_path
    elif (
        path.type == REPLACE_PREFIX_MATCH and prefix_match and path.replace_prefix_match is not None
    ):
        if match.path:
            target.regex_rewrite.pattern.regex = ".*"
            target.regex_rewrite.substitution = path.replace_prefix_match
        elif match.prefix:
            target.prefix_rewrite = path.replace_prefix_match


def _envoy_routes(
    route: Route, split: list[tuple[Backend, int]], name: ClusterNamer
) -> list[route_pb2.Route]:
    result = []
    assert route.match.path is not None
    for envoy_match in _path_matches(route.match.path):
        _add_headers(envoy_match, route.match)
        envoy_route = route_pb2.Route(name=route.hash, match=envoy_match)
        action = envoy_route.route
        action.timeout.SetInParent()
        if len(split) == 1:
            action.cluster = name(*split[0][0])
        else:
            for backend, weight in split:
                action.weighted_clusters.clusters.add(name=name(*backend)).weight.value = weight
        prefix_match = route.match.path.type == PATH_PREFIX
        for item in route.filters:
            _apply_filter(envoy_route, item, prefix_match, name)
        result.append(envoy_route)
    return result


def http_plan(
    matched: KindPolicies, tags: Mapping[str, str], protocol_of: Callable[[str], str]
) -> OutboundPlan | None:
    """The routes of the outbound with ``tags`` (None: no rule for its service)."""
    rule = matched.to_rules.compute(service_element(tags.get(SERVICE_TAG, "")))
    rules = merged_rules(rule) if rule is not None else []
    if not rules:
        return None
    seen: dict[str, str] = {}
    planned: list[tuple[Route, list[tuple[Backend, int]]]] = []
    backends: dict[Backend, None] = {}
    for route in prepare_routes(rules, tags):
        split = _split(route.backend_refs, protocol_of, seen)
        if not split:
            continue
        planned.append((route, split))
        backends.update((backend, None) for backend, _ in split)
        for item in route.filters:
            if item.type == REQUEST_MIRROR and item.request_mirror is not None:
                backends[backend_of(item.request_mirror.backend_ref)] = None

    def rewrite(listener: listener_pb2.Listener, name: ClusterNamer) -> None:
        def change(hcm: Any) -> None:
            host = hcm.route_config.virtual_hosts[0]
            del host.routes[:]
            for route, split in planned:
                host.routes.extend(_envoy_routes(route, split, name))

        for chain in listener.filter_chains:
            update_hcm(chain, change)

    return OutboundPlan(tuple(backends), tuple(sorted(seen.items())), rewrite)


class MeshHTTPRoutePlugin(PolicyPlugin):
    kind = KIND

    def outbound_plan(
        self,
        policies: ProxyPolicies,
        tags: Mapping[str, str],
        protocol: str,
        protocol_of: Callable[[str], str],
    ) -> OutboundPlan | None:
        matched = policies.get(KIND.name)
        if matched is None or protocol not in HTTP_PROTOCOLS:
            return None
        return http_plan(matched, tags, protocol_of)


PLUGIN = register_plugin(MeshHTTPRoutePlugin())
