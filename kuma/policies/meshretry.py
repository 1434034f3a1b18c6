"""MeshRetry (Kuma ``pkg/plugins/policies/meshretry``): retries of outbound requests.

Envoy change, as Kuma's plugin, on outbound listeners only, by the destination service's
protocol: ``tcp`` gets the TCP proxy's ``max_connect_attempts``; ``http`` and ``grpc`` get a
``retry_policy`` on every route (``retry_on`` default ``gateway-error,connect-failure,
refused-stream`` for HTTP, the gRPC list for gRPC; status codes in ``retryOn`` become
``retriable_status_codes``, ``HttpMethod*`` items ``:method`` request header matchers).
Kuma configures nothing for ``http2`` and ``kafka`` services; neither does this.
The ``RetryPolicy`` itself is built in ``retry_policy``; the builtin gateway's part is
``retry_gateway``.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import msgspec
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2

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

from .conf import MUST_BE_DEFINED, MUST_NOT_BE_EMPTY, check_duration
from .matching import KindPolicies
from .plugin import PolicyPlugin, register_plugin, service_element, update_hcm, update_tcp_proxy
from .retry_policy import (
    GRPC_RETRY_ON,
    HTTP_RETRY_ON,
    RESET_FORMATS,
    grpc_retry_policy,
    http_retry_policy,
    is_status_code,
)

# Kuma checks the format with its CRD schema's enum.
_RESET_FORMAT_MESSAGE = "must be Seconds or UnixTimestamp"
_PRIORITY_ONCE = "OmitPreviousPriorities must only be specified once"


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
        if header.format not in RESET_FORMATS:
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
            if item not in HTTP_RETRY_ON and not is_status_code(item):
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
