"""MeshHTTPRoute's schema and Kuma's validation (``pkg/plugins/policies/meshhttproute/api``).

Unlike other kinds, a ``to`` item holds ``rules`` (``matches`` + ``default``) instead of a
``default``: as Kuma's ``To.GetDefault`` does, the item's conf for rule building is
``{rules: <its rules reversed>, hostnames}``. The rules of every policy covering a service are
concatenated (``appends``) and merged by their matches in :mod:`.order` (Kuma's
``mergeValuesByKey``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, ClassVar

import msgspec

from kuma.resources.errors import Violation
from kuma.resources.model import (
    MESH,
    MESH_GATEWAY,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    Policy,
    PolicyConf,
    TargetRef,
)
from kuma.resources.policy import PolicyKind, register
from kuma.resources.validation.policy import MUST_BE_DEFINED, MUST_NOT_BE_DEFINED, check_target_ref

from ..backendref import BACKEND_KINDS, BackendRef, RouteSpec, check_backend_refs

EXACT, PATH_PREFIX, REGULAR_EXPRESSION = "Exact", "PathPrefix", "RegularExpression"
PRESENT, ABSENT, PREFIX = "Present", "Absent", "Prefix"
REQUEST_HEADER_MODIFIER = "RequestHeaderModifier"
RESPONSE_HEADER_MODIFIER = "ResponseHeaderModifier"
REQUEST_REDIRECT = "RequestRedirect"
URL_REWRITE = "URLRewrite"
REQUEST_MIRROR = "RequestMirror"
REPLACE_FULL_PATH, REPLACE_PREFIX_MATCH = "ReplaceFullPath", "ReplacePrefixMatch"


class PathMatch(PolicyConf, frozen=True):
    value: str = ""
    type: str = ""


class QueryParamsMatch(PolicyConf, frozen=True):
    type: str = ""
    name: str = ""
    value: str = ""


class HeaderMatch(PolicyConf, frozen=True):
    type: str | None = None
    name: str = ""
    value: str = ""


class Match(PolicyConf, frozen=True):
    path: PathMatch | None = None
    method: str | None = None
    query_params: tuple[QueryParamsMatch, ...] = ()
    headers: tuple[HeaderMatch, ...] = ()


class HeaderKeyValue(PolicyConf, frozen=True):
    name: str = ""
    value: str = ""


class HeaderModifier(PolicyConf, frozen=True):
    set: tuple[HeaderKeyValue, ...] | None = None
    add: tuple[HeaderKeyValue, ...] | None = None
    remove: tuple[str, ...] | None = None


class PathRewrite(PolicyConf, frozen=True):
    type: str = ""
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None


class RequestRedirect(PolicyConf, frozen=True):
    scheme: str | None = None
    hostname: str | None = None
    path: PathRewrite | None = None
    port: int | None = None
    status_code: int | None = None


class URLRewrite(PolicyConf, frozen=True):
    hostname: str | None = None
    path: PathRewrite | None = None
    host_to_backend_hostname: bool = False


class RequestMirror(PolicyConf, frozen=True):
    #: Kuma's IntOrString ("50", 50, "12.5").
    percentage: int | str | None = None
    backend_ref: BackendRef = msgspec.field(default_factory=BackendRef)


class Filter(PolicyConf, frozen=True):
    type: str = ""
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: URLRewrite | None = msgspec.field(default=None, name="urlRewrite")
    request_mirror: RequestMirror | None = None


class RuleConf(PolicyConf, frozen=True):
    filters: tuple[Filter, ...] | None = None
    backend_refs: tuple[BackendRef, ...] | None = None


class Rule(PolicyConf, frozen=True):
    matches: tuple[Match, ...] = ()
    default: RuleConf = msgspec.field(default_factory=RuleConf)


class Conf(PolicyConf, frozen=True):
    """Kuma's ``PolicyDefault``: what a ``to`` item contributes to rule building."""

    rules: tuple[Rule, ...] = ()
    hostnames: tuple[str, ...] = ()


class To(PolicyConf, frozen=True):
    target_ref: TargetRef = msgspec.field(default_factory=TargetRef)
    hostnames: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()

    @property
    def default(self) -> Conf:
        """Kuma's ``To.GetDefault``: the rules reversed (merging puts later rules first)."""
        return Conf(rules=self.rules[::-1], hostnames=self.hostnames)


class MeshHTTPRoute(Policy, tag="MeshHTTPRoute", frozen=True):
    spec: RouteSpec[To] = msgspec.field(default_factory=RouteSpec)  # type: ignore[assignment]
    TYPE: ClassVar[str] = "MeshHTTPRoute"


# --- validation (Kuma's validation.go) ----------------------------------------------------

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_PREFIX_ONLY = "can only appear if all matches match a path prefix"


def _path(out: list[Violation], at: str, match: PathMatch | None) -> None:
    if match is None:
        return
    if match.type == PATH_PREFIX and match.value != "/":
        if match.value.endswith("/"):
            out.append(
                Violation(
                    f"{at}.value",
                    "does not need a trailing slash because only a `/`-separated prefix or an "
                    "entire path is matched",
                )
            )
        if not match.value.startswith("/"):
            out.append(Violation(f"{at}.value", "must be an absolute path"))
    elif match.type == EXACT and not match.value.startswith("/"):
        out.append(Violation(f"{at}.value", "must be an absolute path"))


def _matches(out: list[Violation], at: str, matches: tuple[Match, ...]) -> None:
    for index, match in enumerate(matches):
        here = f"{at}[{index}]"
        _path(out, f"{here}.path", match.path)
        names: set[str] = set()
        for i, query in enumerate(match.query_params):
            if query.name in names:
                out.append(
                    Violation(
                        f"{here}.queryParams[{i}].name", f"multiple entries for name {query.name}"
                    )
                )
            names.add(query.name)
        for i, header in enumerate(match.headers):
            if header.type in (PRESENT, ABSENT) and header.value:
                out.append(Violation(f"{here}.headers[{i}].value", MUST_NOT_BE_DEFINED))


def _hostname(out: list[Violation], at: str, hostname: str | None) -> None:
    """Kuma's validatePreciseHostname (k8s IsValidIP, IsDNS1123Subdomain)."""
    if hostname is None:
        return
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        pass
    else:
        out.append(Violation(at, "cannot be an IP address"))
        return
    if len(hostname) > 253:
        out.append(Violation(at, "must be no more than 253 characters"))
    if _SUBDOMAIN.fullmatch(hostname) is None:
        out.append(Violation(at, _SUBDOMAIN_MESSAGE))


def _header_modifier(out: list[Violation], at: str, modifier: HeaderModifier) -> None:
    if modifier.set is None and modifier.add is None and modifier.remove is None:
        out.append(Violation(at, "must have at least one defined: set, add, remove"))
        return
    seen: set[str] = set()
    named = [("set", h.name) for h in modifier.set or ()]
    named += [("add", h.name) for h in modifier.add or ()]
    counters = {"set": 0, "add": 0, "remove": 0}
    for field, name in [*named, *(("remove", n) for n in modifier.remove or ())]:
        index = counters[field]
        counters[field] += 1
        if name in seen:
            out.append(Violation(f"{at}.{field}[{index}].name", "duplicate header name"))
        seen.add(name)


def _without_prefix(matches: tuple[Match, ...]) -> bool:
    return any(m.path is None or m.path.type != PATH_PREFIX for m in matches)


def _rewrite(
    out: list[Violation], at: str, rewrite: RequestRedirect | URLRewrite, rule: Rule
) -> None:
    """What redirects and URL rewrites share: a prefix replacement needs prefix matches."""
    path = rewrite.path
    prefix = path is not None and path.replace_prefix_match is not None
    if prefix and _without_prefix(rule.matches):
        out.append(Violation(f"{at}.path.replacePrefixMatch", _PREFIX_ONLY))
    _hostname(out, f"{at}.hostname", rewrite.hostname)


def _filters(out: list[Violation], at: str, top: str, rule: Rule) -> None:
    for index, item in enumerate(rule.default.filters or ()):
        here = f"{at}[{index}]"
        if item.type in (REQUEST_HEADER_MODIFIER, RESPONSE_HEADER_MODIFIER):
            field = (
                "requestHeaderModifier"
                if item.type == REQUEST_HEADER_MODIFIER
                else "responseHeaderModifier"
            )
            modifier = (
                item.request_header_modifier
                if item.type == REQUEST_HEADER_MODIFIER
                else item.response_header_modifier
            )
            if modifier is None:
                out.append(Violation(f"{here}.{field}", MUST_BE_DEFINED))
            else:
                _header_modifier(out, f"{here}.{field}", modifier)
        elif item.type == REQUEST_REDIRECT:
            if item.request_redirect is None:
                out.append(Violation(f"{here}.requestRedirect", MUST_BE_DEFINED))
                continue
            _rewrite(out, f"{here}.requestRedirect", item.request_redirect, rule)
        elif item.type == URL_REWRITE:
            rewrite = item.url_rewrite
            if rewrite is None:
                out.append(Violation(f"{here}.urlRewrite", MUST_BE_DEFINED))
                continue
            _rewrite(out, f"{here}.urlRewrite", rewrite, rule)
            if rewrite.host_to_backend_hostname:
                field = f"{here}.urlRewrite.hostToBackendHostname"
                if top != MESH_GATEWAY:
                    out.append(Violation(field, "can only be set with MeshGateway"))
                if rewrite.hostname is not None:
                    out.append(Violation(field, "cannot be set together with hostname"))
        elif item.type == REQUEST_MIRROR:
            if item.request_mirror is None:
                out.append(Violation(f"{here}.requestMirror", MUST_BE_DEFINED))
                continue
            check_target_ref(
                out,
                f"{here}.requestMirror.backendRef",
                item.request_mirror.backend_ref,
                BACKEND_KINDS,
            )


def _validate_lists(spec: Any, out: list[Violation]) -> None:
    top = spec.target_ref.kind
    for index, item in enumerate(spec.to):
        at = f"spec.to[{index}]"
        for r, rule in enumerate(item.rules):
            here = f"{at}.rules[{r}]"
            _matches(out, f"{here}.matches", rule.matches)
            _filters(out, f"{here}.default.filters", top, rule)
            refs = rule.default.backend_refs or ()
            redirects = any(f.type == REQUEST_REDIRECT for f in rule.default.filters or ())
            if not refs and top == MESH_GATEWAY and not redirects:
                out.append(Violation(f"{here}.default.backendRefs", "must not be empty"))
            check_backend_refs(out, f"{here}.default.backendRefs", refs)
        if item.hostnames and top != MESH_GATEWAY:
            out.append(Violation(f"{at}.hostnames", MUST_NOT_BE_DEFINED))


KIND = register(
    PolicyKind(
        name="MeshHTTPRoute",
        cls=MeshHTTPRoute,
        plural="meshhttproutes",
        conf_type=Conf,
        top_kinds=(MESH, MESH_GATEWAY, MESH_SUBSET, MESH_SERVICE, MESH_SERVICE_SUBSET),
        to_kinds=(MESH_SERVICE,),
        validate_lists=_validate_lists,
        # Every policy's rules are kept (in merge order) and merged by matches in .order.
        appends=frozenset({"rules"}),
        # Kuma's plugin order: routes come first.
        order=1,
        restricting_tops=(MESH_GATEWAY,),
        gateway_listener_tags=True,
    )
)
