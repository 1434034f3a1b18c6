"""MeshRetry's Envoy ``RetryPolicy`` (Kuma's genHttpRetryPolicy and genGrpcRetryPolicy) and the
vocabularies it maps (``retryOn`` names to Envoy's, reset header formats), which the kind's
validation in ``meshretry`` checks against; used by the sidecar plugin (``meshretry``) and the
builtin gateway's (``retry_gateway``)."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.retry.host.omit_host_metadata.v3 import (
    omit_host_metadata_config_pb2 as omit_host_metadata_pb2,
)
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2 as previous_priorities_pb2,
)

from .conf import nanoseconds
from .plugin import set_duration

if TYPE_CHECKING:  # meshretry imports this module: its conf types for the annotations only
    from .meshretry import Grpc, HeaderMatch, Http, Predicate

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
RESET_FORMATS = {
    "Seconds": route_components_pb2.RetryPolicy.SECONDS,
    "UnixTimestamp": route_components_pb2.RetryPolicy.UNIX_TIMESTAMP,
}
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
OMIT_HOST_METADATA = "envoy.retry_host_predicates.omit_host_metadata"
PREVIOUS_PRIORITIES = "envoy.retry_priorities.previous_priorities"


def is_status_code(item: str) -> bool:
    try:
        HTTPStatus(int(item))
    except ValueError:
        return False
    return True


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
            target.reset_headers.add(name=header.name, format=RESET_FORMATS[header.format])
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
        if is_status_code(item):
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
