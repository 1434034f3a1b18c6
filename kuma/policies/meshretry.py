"""MeshRetry (Kuma ``pkg/plugins/policies/meshretry``): retries of outbound requests.

Envoy change, as Kuma's plugin, on outbound listeners only, by the destination service's
protocol: ``tcp`` gets the TCP proxy's ``max_connect_attempts``; ``http`` and ``grpc`` get a
``retry_policy`` on every route (``retry_on`` default ``gateway-error,connect-failure,
refused-stream`` for HTTP, the gRPC list for gRPC; status codes in ``retryOn`` become
``retriable_status_codes``, ``HttpMethod*`` items ``:method`` request header matchers).
Kuma configures nothing for ``http2`` and ``kafka`` services; neither does this.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, ClassVar

import msgspec
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.retry.host.omit_host_metadata.v3 import (
    omit_host_metadata_config_pb2 as omit_host_metadata_pb2,
)
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2 as previous_priorities_pb2,
)

from kuma.resources.errors import Violation
from kuma.resources.model import (
    MESH,
    MESH_GATEWAY,
    MESH_HTTP_ROUTE,
    MESH_SERVICE,
    Policy,
    PolicyConf,
    PolicySpec,
)
from kuma.resources.policy import ALL_TOP_KINDS, PolicyKind, register

from .conf import MUST_BE_DEFINED, MUST_NOT_BE_EMPTY, check_duration, nanoseconds
from .gateway import (
    HTTP_LISTENERS,
    GatewayPlugin,
    listener_rules,
    register_gateway_plugin,
    route_element,
)
from .matching import InboundKey, KindPolicies
from .plugin import (
    PolicyPlugin,
    register_plugin,
    service_element,
    set_duration,
    update_hcm,
    update_tcp_proxy,
)

HTTP_RETRY_ON_DEFAULT = "gateway-error,connect-failure,refused-stream"
GRPC_RETRY_ON_DEFAULT = (
    "cancelled,connect-failure,gateway-error,refused-stream,reset,resource-exhausted,unavailable"
)
RETRIABLE_STATUS_CODES = "retriable-status-codes"
HTTP_METHOD_PREFIX = "HttpMethod"

HTTP_RETRY_ON = {
    "5xx": "5xx",
    "GatewayError": "gateway-error",
    "Reset": "reset",
    "Retriable4xx": "retriable-4xx",
    "ConnectFailure": "connect-failure",
    "EnvoyRatelimited": "envoy-ratelimited",
    "RefusedStream": "refused-stream",
    "Http3PostConnectFailure": "http3-post-connect-failure",
    **{
        f"{HTTP_METHOD_PREFIX}{m.capitalize()}": m
        for m in ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
    },
}
GRPC_RETRY_ON = {
    "Canceled": "canceled",
    "DeadlineExceeded": "deadline-exceeded",
    "Internal": "internal",
    "ResourceExhausted": "resource-exhausted",
    "Unavailable": "unavailable",
}
_RESET_FORMATS = {
    "Seconds": route_components_pb2.RetryPolicy.SECONDS,
    "UnixTimestamp": route_components_pb2.RetryPolicy.UNIX_TIMESTAMP,
}
# Kuma checks the format with its CRD schema's enum.
_RESET_FORMAT_MESSAGE = "must be Seconds or UnixTimestamp"
_PRIORITY_ONCE = "OmitPreviousPriorities must only be specified once"


PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
OMIT_HOST_METADATA = "envoy.retry_host_predicates.omit_host_metadata"
PREVIOUS_PRIORITIES = "envoy.retry_priorities.previous_priorities"


class HeaderMatch(PolicyConf, frozen=True):
    name: str = ""
    type: str | None = None
    value: str | None = None


class BackOff(PolicyConf, frozen=True):
    base_interval: str | None = None
    max_interval: str | None = None


class ResetHeader(PolicyConf, frozen=True):
    name: str = ""
    format: str = ""


class RateLimitedBackOff(PolicyConf, frozen=True):
    reset_headers: tuple[ResetHeader, ...] | None = None
    max_interval: str | None = None


class Predicate(PolicyConf, frozen=True):
    predicate: str = ""
    tags: dict[str, str] | None = None
    update_frequency: int = 0


class Tcp(PolicyConf, frozen=True):
    max_connect_attempt: int | None = None


class Http(PolicyConf, frozen=True):
    num_retries: int | None = None
    per_try_timeout: str | None = None
    back_off: BackOff | None = None
    rate_limited_back_off: RateLimitedBackOff | None = None
    # Kuma accepts status codes unquoted (YAML numbers) as well as strings.
    retry_on: tuple[str | int, ...] | None = None
    retriable_response_headers: tuple[HeaderMatch, ...] | None = None
    retriable_request_headers: tuple[HeaderMatch, ...] | None = None
    host_selection: tuple[Predicate, ...] | None = None
    host_selection_max_attempts: int | None = None


class Grpc(PolicyConf, frozen=True):
    num_retries: int | None = None
    per_try_timeout: str | None = None
    back_off: BackOff | None = None
    rate_limited_back_off: RateLimitedBackOff | None = None
    # Kuma accepts status codes unquoted (YAML numbers) as well as strings.
    retry_on: tuple[str | int, ...] | None = None


class Conf(PolicyConf, frozen=True):
    tcp: Tcp | None = None
    http: Http | None = None
    grpc: Grpc | None = None


class MeshRetry(Policy, tag="MeshRetry", frozen=True):
    spec: PolicySpec[Conf] = msgspec.field(default_factory=PolicySpec)
    TYPE: ClassVar[str] = "MeshRetry"


# --- validation (Kuma's paths: the conf is rooted at ``default.conf``) ------------------------


def _is_status_code(item: str) -> bool:
    try:
        HTTPStatus(int(item))
    except ValueError:
        return False
    return True


def _back_off(out: list[Violation], path: str, back_off: BackOff | None) -> None:
    if back_off is None:
        return
    if back_off.base_interval is None and back_off.max_interval is None:
        out.append(Violation(f"{path}.backOff", MUST_NOT_BE_EMPTY))
    check_duration(out, f"{path}.backOff.baseInterval", back_off.base_interval)
    check_duration(out, f"{path}.backOff.maxInterval", back_off.max_interval)


def _rate_limited(out: list[Violation], path: str, conf: RateLimitedBackOff | None) -> None:
    if conf is None:
        return
    path = f"{path}.rateLimitedBackOff"
    if conf.max_interval is not None:
        check_duration(out, f"{path}.maxInterval", conf.max_interval, positive=True)
    if conf.reset_headers is None:
        out.append(Violation(f"{path}.resetHeaders", MUST_BE_DEFINED))
        return
    for index, header in enumerate(conf.reset_headers):
        if not header.name:
            out.append(Violation(f"{path}.resetHeaders[{index}].name", MUST_BE_DEFINED))
        if header.format not in _RESET_FORMATS:
            out.append(
                Violation(
                    f"{path}.resetHeaders[{index}].format", "must be Seconds or UnixTimestamp"
                )
            )


def _host_selection(out: list[Violation], path: str, predicates: tuple[Predicate, ...]) -> None:
    priority = False
    for index, predicate in enumerate(predicates):
        at = f"{path}.hostSelection[{index}]"
        if predicate.predicate == "OmitHostsWithTags":
            if predicate.tags is None:
                out.append(Violation(f"{at}.tags", MUST_BE_DEFINED))
        elif predicate.predicate == "OmitPreviousPriorities":
            if priority:
                out.append(
                    Violation(
                        f"{at}.predicate", "OmitPreviousPriorities must only be specified once"
                    )
                )
            if predicate.update_frequency <= 0:
                out.append(
                    Violation(f"{at}.updateFrequency", "must be defined and greater than zero")
                )
            priority = True
        elif predicate.predicate != "OmitPreviousHosts":
            out.append(
                Violation(f"{at}.predicate", f"unknown predicate type '{predicate.predicate}'")
            )


def _validate_conf(conf: Conf | None, path: str, top: str, out: list[Violation]) -> None:
    path = f"{path}.conf"
    conf = conf or Conf()
    if conf.tcp is None and conf.http is None and conf.grpc is None:
        out.append(Violation(path, "at least one of the 'tcp', 'http', 'grpc' must be specified"))
    if conf.tcp is not None and conf.tcp.max_connect_attempt is None:
        out.append(Violation(f"{path}.tcp", MUST_NOT_BE_EMPTY))
    http = conf.http
    if http is not None:
        at = f"{path}.http"
        if (
            http.num_retries,
            http.per_try_timeout,
            http.back_off,
            http.retry_on,
            http.retriable_request_headers,
            http.retriable_response_headers,
            http.rate_limited_back_off,
            http.host_selection,
        ) == (None,) * 8:
            out.append(Violation(at, MUST_NOT_BE_EMPTY))
        check_duration(out, f"{at}.perTryTimeout", http.per_try_timeout)
        _back_off(out, at, http.back_off)
        _rate_limited(out, at, http.rate_limited_back_off)
        for index, item in enumerate(str(i) for i in http.retry_on or ()):
            if item not in HTTP_RETRY_ON and not _is_status_code(item):
                out.append(Violation(f"{at}.retryOn[{index}]", f"unknown item '{item}'"))
        if http.host_selection is not None:
            _host_selection(out, at, http.host_selection)
    grpc = conf.grpc
    if grpc is not None:
        at = f"{path}.grpc"
        fields = (grpc.num_retries, grpc.per_try_timeout, grpc.back_off, grpc.retry_on)
        if fields == (None,) * 4 and grpc.rate_limited_back_off is None:
            out.append(Violation(at, MUST_NOT_BE_EMPTY))
        check_duration(out, f"{at}.perTryTimeout", grpc.per_try_timeout)
        _back_off(out, at, grpc.back_off)
        _rate_limited(out, at, grpc.rate_limited_back_off)
        for index, item in enumerate(str(i) for i in grpc.retry_on or ()):
            if item not in GRPC_RETRY_ON:
                out.append(Violation(f"{at}.retryOn[{index}]", f"unknown item '{item}'"))


def _validate_lists(spec: PolicySpec[Any], out: list[Violation]) -> None:
    if not spec.to:
        out.append(Violation("spec.to", "needs at least one item"))


KIND = register(
    PolicyKind(
        name="MeshRetry",
        cls=MeshRetry,
        plural="meshretries",
        conf_type=Conf,
        top_kinds=ALL_TOP_KINDS,
        to_kinds=(MESH, MESH_SERVICE),
        validate_conf=_validate_conf,
        validate_lists=_validate_lists,
        gateway_listener_tags=True,
        restricting_tops=(MESH_GATEWAY, MESH_HTTP_ROUTE),
        order=12,
    )
)


# --- Envoy ---------------------------------------------------------------------------------


def _header_matcher(target: route_components_pb2.HeaderMatcher, header: HeaderMatch) -> None:
    target.name = header.name
    kind = header.type or "Exact"
    value = header.value or ""
    if kind == "RegularExpression":
        target.string_match.safe_regex.regex = value
    elif kind == "Prefix":
        target.string_match.prefix = value
    elif kind == "Exact":
        target.string_match.exact = value
    elif kind == "Present":
        target.present_match = True
    elif kind == "Absent":
        target.present_match = False


def _common(policy: route_components_pb2.RetryPolicy, conf: Http | Grpc) -> None:
    if conf.per_try_timeout is not None:
        set_duration(policy.per_try_timeout, nanoseconds(conf.per_try_timeout) or 0)
    if conf.num_retries is not None:
        policy.num_retries.value = conf.num_retries
        policy.num_retries.SetInParent()
    if conf.back_off is not None:
        policy.retry_back_off.SetInParent()
        if conf.back_off.base_interval is not None:
            set_duration(
                policy.retry_back_off.base_interval, nanoseconds(conf.back_off.base_interval) or 0
            )
        if conf.back_off.max_interval is not None:
            set_duration(
                policy.retry_back_off.max_interval, nanoseconds(conf.back_off.max_interval) or 0
            )
    limited = conf.rate_limited_back_off
    if limited is not None:
        target = policy.rate_limited_retry_back_off
        target.SetInParent()
        for header in limited.reset_headers or ():
            target.reset_headers.add(name=header.name, format=_RESET_FORMATS[header.format])
        if limited.max_interval is not None:
            set_duration(target.max_interval, nanoseconds(limited.max_interval) or 0)


def http_retry_policy(conf: Http) -> route_components_pb2.RetryPolicy:
    """Kuma's genHttpRetryPolicy."""
    policy = route_components_pb2.RetryPolicy(retry_on=HTTP_RETRY_ON_DEFAULT)
    _common(policy, conf)
    retry_on: list[str] = []
    methods: list[str] = []
    codes: list[int] = []
    for item in (str(i) for i in conf.retry_on or ()):
        if _is_status_code(item):
            codes.append(int(item))
        elif item.startswith(HTTP_METHOD_PREFIX):
            methods.append(HTTP_RETRY_ON[item])
        else:
            retry_on.append(HTTP_RETRY_ON[item])
    if retry_on:
        policy.retry_on = ",".join(retry_on)
    if codes:
        policy.retriable_status_codes.extend(codes)
        if RETRIABLE_STATUS_CODES not in policy.retry_on.split(","):
            policy.retry_on = f"{policy.retry_on},{RETRIABLE_STATUS_CODES}"
    for method in methods:
        matcher = policy.retriable_request_headers.add(name=":method")
        matcher.string_match.exact = method
    for header in conf.retriable_request_headers or ():
        _header_matcher(policy.retriable_request_headers.add(), header)
    for header in conf.retriable_response_headers or ():
        _header_matcher(policy.retriable_headers.add(), header)
    _host_selection_predicates(policy, conf.host_selection or ())
    if conf.host_selection_max_attempts is not None:
        policy.host_selection_retry_max_attempts = conf.host_selection_max_attempts
    return policy


def _host_selection_predicates(
    policy: route_components_pb2.RetryPolicy, predicates: tuple[Predicate, ...]
) -> None:
    """Kuma's configureHostSelectionPredicates: host predicates in order, the last
    OmitPreviousPriorities as the retry priority."""
    for predicate in predicates:
        if predicate.predicate == "OmitPreviousHosts":
            added = policy.retry_host_predicate.add(name=PREVIOUS_HOSTS)
            added.typed_config.Pack(previous_hosts_pb2.PreviousHostsPredicate())
        elif predicate.predicate == "OmitHostsWithTags":
            config = omit_host_metadata_pb2.OmitHostMetadataConfig()
            config.metadata_match.filter_metadata["envoy.lb"].update(predicate.tags or {})
            added = policy.retry_host_predicate.add(name=OMIT_HOST_METADATA)
            added.typed_config.Pack(config)
        elif predicate.predicate == "OmitPreviousPriorities":
            priorities = previous_priorities_pb2.PreviousPrioritiesConfig(
                update_frequency=predicate.update_frequency
            )
            policy.retry_priority.name = PREVIOUS_PRIORITIES
            policy.retry_priority.typed_config.Pack(priorities)


def grpc_retry_policy(conf: Grpc) -> route_components_pb2.RetryPolicy:
    """Kuma's genGrpcRetryPolicy."""
    policy = route_components_pb2.RetryPolicy(retry_on=GRPC_RETRY_ON_DEFAULT)
    _common(policy, conf)
    if conf.retry_on:
        policy.retry_on = ",".join(GRPC_RETRY_ON[str(item)] for item in conf.retry_on)
    return policy


# One RetryPolicy per distinct conf (the confs are frozen, compared by value), not one per
# listener: a policy change re-builds every outbound listener of the proxies it selects, and
# building the policy was about 5 % of that. Callers copy it into their routes, never edit it.
_shared_http_policy = functools.lru_cache(maxsize=256)(http_retry_policy)
_shared_grpc_policy = functools.lru_cache(maxsize=256)(grpc_retry_policy)


class MeshRetryPlugin(PolicyPlugin):
    kind = KIND

    def outbound_listener(
        self, listener: listener_pb2.Listener, policies: KindPolicies, service: str, protocol: str
    ) -> None:
        conf: Conf | None = policies.to_conf(service_element(service))
        if not listener.filter_chains:
            return
        chain = listener.filter_chains[0]  # Kuma configures the first chain only
        if protocol == "tcp" and conf is not None and conf.tcp is not None:
            attempts = conf.tcp.max_connect_attempt
            if attempts is not None:

                def tcp(proxy: Any) -> None:
                    proxy.max_connect_attempts.value = attempts
                    proxy.max_connect_attempts.SetInParent()

                update_tcp_proxy(chain, tcp)
                return
        policy: route_components_pb2.RetryPolicy | None = None
        if conf is not None:
            if protocol == "http" and conf.http is not None:
                policy = _shared_http_policy(conf.http)
            elif protocol == "grpc" and conf.grpc is not None:
                policy = _shared_grpc_policy(conf.grpc)
        if policy is None:
            return

        def http(manager: Any) -> None:
            for host in manager.route_config.virtual_hosts:
                for route in host.routes:
                    if route.HasField("route"):
                        route.route.retry_policy.CopyFrom(policy)

        update_hcm(chain, http)


PLUGIN = register_plugin(MeshRetryPlugin())


# --- the builtin gateway (Kuma's applyToGateway: its Configurer on the port's ``to`` rules) ---


class MeshRetryGateway(GatewayPlugin):
    kind = KIND

    def listener(
        self,
        listener: listener_pb2.Listener,
        policies: KindPolicies,
        port: InboundKey,
        protocol: str,
    ) -> None:
        # HTTP(S) ports route by RDS: their retries are set on the route configurations.
        rules = listener_rules(policies, port)
        if rules is None or protocol in HTTP_LISTENERS or not listener.filter_chains:
            return
        conf: Conf | None = policies.conf(rules.compute({}))
        if conf is None or conf.tcp is None or conf.tcp.max_connect_attempt is None:
            return
        attempts = conf.tcp.max_connect_attempt

        def tcp(proxy: Any) -> None:
            proxy.max_connect_attempts.value = attempts
            proxy.max_connect_attempts.SetInParent()

        update_tcp_proxy(listener.filter_chains[0], tcp)  # Kuma configures the first chain only

    def route_configuration(
        self,
        config: route_pb2.RouteConfiguration,
        policies: KindPolicies,
        port: InboundKey,
        services: Sequence[str],
    ) -> None:
        rules = listener_rules(policies, port)
        if rules is None:
            return
        common = _gateway_policy(policies.conf(rules.compute({})))
        for host in config.virtual_hosts:
            for route in host.routes:
                policy = _gateway_policy(policies.conf(rules.compute(route_element(route))))
                policy = policy or common
                if policy is not None and route.HasField("route"):
                    route.route.retry_policy.CopyFrom(policy)


def _gateway_policy(conf: Conf | None) -> route_components_pb2.RetryPolicy | None:
    # A gateway forwards as HTTP (Kuma's Configurer with ProtocolHTTP): the http section only.
    if conf is None or conf.http is None:
        return None
    return http_retry_policy(conf.http)


register_gateway_plugin(MeshRetryGateway())
