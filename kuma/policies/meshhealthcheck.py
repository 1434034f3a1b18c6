"""MeshHealthCheck (Kuma ``pkg/plugins/policies/meshhealthcheck``): active health checks of
the endpoints of outbound services.

Envoy change, as Kuma's plugin, on outbound service clusters (``to`` rule of the service): one
``health_checks`` entry (interval 1m, timeout 15s, unhealthy threshold 5, healthy threshold 1
by default) whose checker follows the service's protocol: HTTP for http/http2 (path ``/``,
HTTP/2 codec for http2), gRPC for grpc, TCP for tcp; a disabled HTTP or gRPC check falls back
to TCP when TCP is configured. ``healthyPanicThreshold`` and ``failTrafficOnPanic`` go to the
cluster's common LB config. Difference: Kuma adds the caller's tags as an ``x-kuma-tags``
request header to HTTP checks; this does not (the cluster stays shared by every caller).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import ClassVar

import msgspec
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.extensions.health_check.event_sinks.file.v3 import file_pb2
from envoy.type.v3 import http_pb2

from kuma.resources.errors import Violation
from kuma.resources.model import (
    MESH,
    MESH_GATEWAY,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    Policy,
    PolicyConf,
    PolicySpec,
)
from kuma.resources.policy import PolicyKind, register

from .caller_tags import TAGS_HEADER, caller_tags_header
from .conf import MINUTE, MUST_BE_DEFINED, SECOND, check_duration, nanoseconds
from .gateway import HTTP_LISTENERS, GatewayPlugin, Reach, host_rules, register_gateway_plugin
from .matching import KindPolicies
from .plugin import PolicyPlugin, register_plugin, service_element, set_duration

DEFAULT_INTERVAL = MINUTE
DEFAULT_TIMEOUT = 15 * SECOND
DEFAULT_UNHEALTHY_THRESHOLD = 5
DEFAULT_HEALTHY_THRESHOLD = 1


class HeaderKeyValue(PolicyConf, frozen=True):
    name: str = ""
    value: str = ""


class HeaderModifier(PolicyConf, frozen=True):
    set: tuple[HeaderKeyValue, ...] = ()
    add: tuple[HeaderKeyValue, ...] = ()


class Tcp(PolicyConf, frozen=True):
    disabled: bool | None = None
    send: str | None = None
    receive: tuple[str, ...] | None = None


class Http(PolicyConf, frozen=True):
    disabled: bool | None = None
    path: str | None = None
    request_headers_to_add: HeaderModifier | None = None
    expected_statuses: tuple[int, ...] | None = None


class Grpc(PolicyConf, frozen=True):
    disabled: bool | None = None
    service_name: str | None = None
    authority: str | None = None


class Conf(PolicyConf, frozen=True):
    interval: str | None = None
    timeout: str | None = None
    unhealthy_threshold: int | None = None
    healthy_threshold: int | None = None
    initial_jitter: str | None = None
    interval_jitter: str | None = None
    interval_jitter_percent: int | None = None
    healthy_panic_threshold: int | str | None = None
    fail_traffic_on_panic: bool | None = None
    event_log_path: str | None = None
    always_log_health_check_failures: bool | None = None
    no_traffic_interval: str | None = None
    tcp: Tcp | None = None
    http: Http | None = None
    grpc: Grpc | None = None
    reuse_connection: bool | None = None


class MeshHealthCheck(Policy, tag="MeshHealthCheck", frozen=True):
    spec: PolicySpec[Conf] = msgspec.field(default_factory=PolicySpec)
    TYPE: ClassVar[str] = "MeshHealthCheck"


# --- validation ----------------------------------------------------------------------------

_GREATER_THAN_ZERO = "must be greater than zero when defined"
_PERCENT_RANGE = "must be in inclusive range [0, 100]"


# govalidator's IsFilePath (Kuma's ValidatePathOrNil): an absolute Unix or Windows path.
_UNIX_PATH = re.compile(r"(/[^/\x00]*)+/?")
_WINDOWS_PATH = re.compile(r'[a-zA-Z]:\\(?:[^\\/:*?"<>|\r\n]+\\)*[^\\/:*?"<>|\r\n]*')


def _is_file_path(path: str) -> bool:
    return bool(_WINDOWS_PATH.fullmatch(path) or _UNIX_PATH.fullmatch(path))


def _percent(value: int | str) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(value) from None


def _validate_conf(conf: Conf | None, path: str, top: str, out: list[Violation]) -> None:
    conf = conf or Conf()
    for name, value in (("interval", conf.interval), ("timeout", conf.timeout)):
        check_duration(out, f"{path}.{name}", value, positive=True)
    for name, number in (
        ("unhealthyThreshold", conf.unhealthy_threshold),
        ("healthyThreshold", conf.healthy_threshold),
    ):
        if number is not None and number <= 0:
            out.append(Violation(f"{path}.{name}", _GREATER_THAN_ZERO))
    for name, value in (
        ("initialJitter", conf.initial_jitter),
        ("intervalJitter", conf.interval_jitter),
    ):
        check_duration(out, f"{path}.{name}", value, positive=True)
    jitter = conf.interval_jitter_percent
    if jitter is not None and not 0 <= jitter <= 100:
        out.append(
            Violation(f"{path}.intervalJitterPercent", "must be in inclusive range [0, 100]")
        )
    panic = conf.healthy_panic_threshold
    if panic is not None:
        try:
            if not 0 <= _percent(panic) <= 100:
                out.append(
                    Violation(
                        f"{path}.healthyPanicThreshold", "must be in inclusive range [0.0, 100.0]"
                    )
                )
        except ValueError:
            out.append(Violation(f"{path}.healthyPanicThreshold", "string must be a valid number"))
    check_duration(out, f"{path}.noTrafficInterval", conf.no_traffic_interval, positive=True)
    if conf.event_log_path is not None and not _is_file_path(conf.event_log_path):
        out.append(Violation(f"{path}.eventLogPath", "must be a valid path when defined"))
    if conf.http is not None:
        if conf.http.path is not None and conf.http.path == "":
            out.append(Violation(f"{path}.http.path", MUST_BE_DEFINED))
        for index, status in enumerate(conf.http.expected_statuses or ()):
            if not 100 <= status < 600:
                out.append(
                    Violation(
                        f"{path}.http.expectedStatuses[{index}]",
                        "must be in inclusive range [100, 599]",
                    )
                )
    if conf.http is None and conf.tcp is None and conf.grpc is None:
        out.append(Violation(path, "must have at least one defined: http, tcp, grpc"))


KIND = register(
    PolicyKind(
        name="MeshHealthCheck",
        cls=MeshHealthCheck,
        plural="meshhealthchecks",
        conf_type=Conf,
        top_kinds=(MESH, MESH_SUBSET, MESH_GATEWAY, MESH_SERVICE, MESH_SERVICE_SUBSET),
        to_kinds=(MESH, MESH_SERVICE),
        validate_conf=_validate_conf,
        gateway_listener_tags=True,
        order=11,
    )
)


# --- Envoy ---------------------------------------------------------------------------------


def _checker(protocol: str, conf: Conf) -> str | None:
    """Kuma's selectHealthCheckType."""
    tcp, http, grpc = conf.tcp, conf.http, conf.grpc
    tcp_on = tcp is not None and not tcp.disabled
    if protocol in ("http", "http2") and http is not None:
        return "http" if not http.disabled else ("tcp" if tcp_on else None)
    if protocol == "grpc" and grpc is not None:
        return "grpc" if not grpc.disabled else ("tcp" if tcp_on else None)
    if protocol == "tcp" and tcp_on:
        return "tcp"
    return None


def _headers(check: health_check_pb2.HealthCheck.HttpHealthCheck, headers: HeaderModifier) -> None:
    for entries, action in (
        (headers.add, base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD),
        (headers.set, base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD),
    ):
        for header in entries:
            for value in header.value.split(","):
                option = check.request_headers_to_add.add(append_action=action)
                option.header.key = header.name
                option.header.value = value


def health_check(
    conf: Conf, protocol: str, kind: str, tags_header: str = ""
) -> health_check_pb2.HealthCheck:
    """``tags_header``: the checking proxy's ``x-kuma-tags`` (Kuma's ``mapHttpHeaders``: first,
    when the proxy has tags)."""
    check = health_check_pb2.HealthCheck()
    set_duration(check.interval, nanoseconds(conf.interval, DEFAULT_INTERVAL) or 0)
    set_duration(check.timeout, nanoseconds(conf.timeout, DEFAULT_TIMEOUT) or 0)
    check.unhealthy_threshold.value = conf.unhealthy_threshold or DEFAULT_UNHEALTHY_THRESHOLD
    check.healthy_threshold.value = conf.healthy_threshold or DEFAULT_HEALTHY_THRESHOLD
    if conf.initial_jitter is not None:
        set_duration(check.initial_jitter, nanoseconds(conf.initial_jitter) or 0)
    if conf.interval_jitter is not None:
        set_duration(check.interval_jitter, nanoseconds(conf.interval_jitter) or 0)
    if conf.interval_jitter_percent is not None:
        check.interval_jitter_percent = conf.interval_jitter_percent
    if conf.event_log_path is not None:
        sink = check.event_logger.add(name="envoy.health_check.event_sinks.file")
        sink.typed_config.Pack(
            file_pb2.HealthCheckEventFileSink(event_log_path=conf.event_log_path)
        )
    if conf.always_log_health_check_failures is not None:
        check.always_log_health_check_failures = conf.always_log_health_check_failures
    if conf.no_traffic_interval is not None:
        set_duration(check.no_traffic_interval, nanoseconds(conf.no_traffic_interval) or 0)
    if conf.reuse_connection is not None:
        check.reuse_connection.value = conf.reuse_connection
    if kind == "http":
        http = conf.http or Http()
        target = check.http_health_check
        target.path = http.path or "/"
        if tags_header:
            tags = target.request_headers_to_add.add().header
            tags.key, tags.value = TAGS_HEADER, tags_header
        if http.request_headers_to_add is not None:
            _headers(target, http.request_headers_to_add)
        for status in http.expected_statuses or ():
            target.expected_statuses.add(start=status, end=status + 1)
        target.codec_client_type = http_pb2.HTTP2 if protocol == "http2" else http_pb2.HTTP1
    elif kind == "grpc":
        grpc = conf.grpc or Grpc()
        target_grpc = check.grpc_health_check
        target_grpc.SetInParent()
        target_grpc.service_name = grpc.service_name or ""
        target_grpc.authority = grpc.authority or ""
    else:
        tcp = conf.tcp or Tcp()
        target_tcp = check.tcp_health_check
        target_tcp.SetInParent()
        if tcp.send is not None:
            target_tcp.send.text = tcp.send.encode().hex()
        for receive in tcp.receive or ():
            target_tcp.receive.add(text=receive.encode().hex())
    return check


def configure_cluster(
    cluster: cluster_pb2.Cluster, conf: Conf, protocol: str, tags_header: str = ""
) -> None:
    if conf.healthy_panic_threshold is not None:
        value = float(_percent(conf.healthy_panic_threshold))
        cluster.common_lb_config.healthy_panic_threshold.value = value
        cluster.common_lb_config.healthy_panic_threshold.SetInParent()
    if conf.fail_traffic_on_panic is not None:
        lb = cluster.common_lb_config
        lb.zone_aware_lb_config.fail_traffic_on_panic = conf.fail_traffic_on_panic
        lb.zone_aware_lb_config.SetInParent()
    kind = _checker(protocol, conf)
    if kind is not None:
        cluster.health_checks.append(health_check(conf, protocol, kind, tags_header))


class MeshHealthCheckPlugin(PolicyPlugin):
    kind = KIND

    def outbound_cluster(
        self, cluster: cluster_pb2.Cluster, policies: KindPolicies, service: str, protocol: str
    ) -> None:
        conf: Conf | None = policies.to_conf(service_element(service))
        if conf is not None:
            configure_cluster(cluster, conf, protocol)


PLUGIN = register_plugin(MeshHealthCheckPlugin())


class MeshHealthCheckGateway(GatewayPlugin):
    """Kuma's ``applyToGateways``: a backend's cluster gets the rule for its service of the
    policies selecting the listener hostname that reaches it (``*`` on HTTP and TCP ports);
    the check's protocol is the listener's (HTTP for HTTP(S), TCP for TCP/TLS), its
    ``x-kuma-tags`` the gateway's."""

    kind = KIND

    def cluster(self, cluster: cluster_pb2.Cluster, policies: KindPolicies, at: Reach) -> None:
        rules = host_rules(policies, at.host)
        conf: Conf | None = (
            None if rules is None else policies.conf(rules.compute(service_element(at.service)))
        )
        if conf is None:
            return
        protocol = "http" if at.listener_protocol in HTTP_LISTENERS else "tcp"
        dataplane = policies.dataplane
        tags = caller_tags_header(dataplane) if dataplane is not None else ""
        configure_cluster(cluster, conf, protocol, tags)


register_gateway_plugin(MeshHealthCheckGateway())
