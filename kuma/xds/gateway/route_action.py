"""A gateway route's match headers and filters as Kuma's gateway route builder sets them
(runtime/gateway ``route_table_generator.go``, ``route/configurers.go``; the filters as
meshhttproute's ``makeHttpRouteEntry`` reads them). These differ from a sidecar's
(:mod:`kuma.policies.meshhttproute.envoy`): headers are matched grouped by kind, modified
headers get Go's canonical key, a ``Host`` header set rewrites the host, and a redirect strips
the query and keeps the listener's port unless it names one.

Applied: RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect without a path rewrite.
Not yet: RequestRedirect and URLRewrite path rewrites, URLRewrite, RequestMirror.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as route_pb2

from kuma.policies.meshhttproute.api import (
    ABSENT,
    EXACT,
    PREFIX,
    PRESENT,
    REGULAR_EXPRESSION,
    REQUEST_HEADER_MODIFIER,
    REQUEST_REDIRECT,
    RESPONSE_HEADER_MODIFIER,
    Filter,
    HeaderModifier,
    Match,
)
from kuma.policies.meshhttproute.envoy import REDIRECT_CODES

_HOST_HEADERS = frozenset({":authority", "Host", "host"})
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def canonical_header_key(name: str) -> str:
    """Go's ``http.CanonicalHeaderKey``: ``x-foo-bar`` → ``X-Foo-Bar``; unchanged when it
    holds a character that is not a token character."""
    if not name or any(c not in _TOKEN for c in name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def add_match(match: route_pb2.RouteMatch, rule: Match) -> None:
    """The method, then headers by kind (exact, regex, present, absent, prefix), then query
    parameters (exact, then regex), each skipped when Kuma's configurer skips it."""
    if rule.method:
        match.headers.add(name=":method").string_match.exact = rule.method
    headers = rule.headers
    for kind in (EXACT, REGULAR_EXPRESSION, PRESENT, ABSENT, PREFIX):
        for header in headers:
            if (header.type or EXACT) != kind or not header.name:
                continue
            if kind == EXACT and header.value:
                match.headers.add(name=header.name).string_match.exact = header.value
            elif kind == REGULAR_EXPRESSION and header.value:
                matcher = match.headers.add(name=header.name).string_match
                matcher.safe_regex.regex = header.value
            elif kind in (PRESENT, ABSENT):
                match.headers.add(name=header.name).present_match = kind == PRESENT
            elif kind == PREFIX:
                match.headers.add(name=header.name).prefix_match = header.value
    exact = [(q.name, q.value) for q in rule.query_params if q.type == EXACT]
    # Kuma 2.7 appends each regex parameter to the exact ones (``RegexQuery =
    # append(match.ExactQuery, ...)``): the exact ones are matched as regexes too.
    regex: list[tuple[str, str]] = []
    for query in rule.query_params:
        if query.type == REGULAR_EXPRESSION:
            regex = [*exact, (query.name, query.value)]
    for name, value in exact:
        if name and value:
            match.query_parameters.add(name=name).string_match.exact = value
    for name, value in regex:
        if name and value:
            match.query_parameters.add(name=name).string_match.safe_regex.regex = value


def _options(modifier: HeaderModifier) -> list[base_pb2.HeaderValueOption]:
    options = []
    for pairs, action in (
        (modifier.set or (), base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD),
        (modifier.add or (), base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD),
    ):
        for pair in pairs:
            option = base_pb2.HeaderValueOption(append_action=action)
            option.header.key = canonical_header_key(pair.name)
            option.header.value = pair.value
            options.append(option)
    return options


def apply_filters(route: route_pb2.Route, filters: tuple[Filter, ...], port: int) -> bool:
    """Apply the filters Kuma's gateway applies; True when the route redirects (it then has
    no forwarding action)."""
    redirected = False
    for item in filters:
        if item.type == REQUEST_HEADER_MODIFIER and item.request_header_modifier is not None:
            modifier = item.request_header_modifier
            for pair in modifier.set or ():
                if pair.name in _HOST_HEADERS and route.HasField("route"):
                    route.route.host_rewrite_literal = pair.value
            kept = HeaderModifier(
                set=tuple(p for p in modifier.set or () if p.name not in _HOST_HEADERS),
                add=modifier.add,
            )
            route.request_headers_to_add.extend(_options(kept))
            route.request_headers_to_remove.extend(modifier.remove or ())
        elif item.type == RESPONSE_HEADER_MODIFIER and item.response_header_modifier is not None:
            modifier = item.response_header_modifier
            route.response_headers_to_add.extend(_options(modifier))
            route.response_headers_to_remove.extend(modifier.remove or ())
        elif item.type == REQUEST_REDIRECT and item.request_redirect is not None:
            redirect = item.request_redirect
            action = route_pb2.RedirectAction(strip_query=True)
            if redirect.scheme:
                action.scheme_redirect = redirect.scheme
            if redirect.hostname:
                action.host_redirect = redirect.hostname
            action.port_redirect = redirect.port or port
            action.response_code = REDIRECT_CODES.get(
                redirect.status_code or 302, route_pb2.RedirectAction.FOUND
            )
            route.redirect.CopyFrom(action)
            redirected = True
    return redirected
