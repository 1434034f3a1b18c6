"""MeshCircuitBreaker (Kuma ``pkg/plugins/policies/meshcircuitbreaker``): connection limits
and outlier detection of clusters.

Envoy change, as Kuma's plugin: outbound clusters take the ``to`` rule of their service,
inbound (application) clusters the ``from`` rule for any client. ``connectionLimits`` become
one DEFAULT-priority ``circuit_breakers`` threshold; ``outlierDetection`` (unless disabled)
an ``outlier_detection`` whose detectors are enforced at 100% when configured and 0% when not.
"""

from __future__ import annotations

from collections.abc import Hashable
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import msgspec
from envoy.config.cluster.v3 import cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2

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

from .conf import MUST_BE_DEFINED, check_duration, nanoseconds
from .gateway import GatewayPlugin, Reach, listener_rules, register_gateway_plugin
from .matching import InboundKey, KindPolicies
from .plugin import (
    PolicyPlugin,
    from_rule_input,
    register_plugin,
    service_element,
    set_duration,
)


class ConnectionLimits(PolicyConf, frozen=True):
    max_connections: int | None = None
    max_connection_pools: int | None = None
    max_pending_requests: int | None = None
    max_retries: int | None = None
    max_requests: int | None = None


class Consecutive(PolicyConf, frozen=True):
    consecutive: int | None = None


class SuccessRate(PolicyConf, frozen=True):
    minimum_hosts: int | None = None
    request_volume: int | None = None
    standard_deviation_factor: int | str | None = None


class FailurePercentage(PolicyConf, frozen=True):
    minimum_hosts: int | None = None
    request_volume: int | None = None
    threshold: int | None = None


class Detectors(PolicyConf, frozen=True):
    total_failures: Consecutive | None = None
    gateway_failures: Consecutive | None = None
    local_origin_failures: Consecutive | None = None
    success_rate: SuccessRate | None = None
    failure_percentage: FailurePercentage | None = None


class OutlierDetection(PolicyConf, frozen=True):
    disabled: bool | None = None
    interval: str | None = None
    base_ejection_time: str | None = None
    max_ejection_percent: int | None = None
    split_external_and_local_errors: bool | None = None
    detectors: Detectors | None = None


class Conf(PolicyConf, frozen=True):
    connection_limits: ConnectionLimits | None = None
    outlier_detection: OutlierDetection | None = None


class MeshCircuitBreaker(Policy, tag="MeshCircuitBreaker", frozen=True):
    spec: PolicySpec[Conf] = msgspec.field(default_factory=PolicySpec)
    TYPE: ClassVar[str] = "MeshCircuitBreaker"


# --- validation ----------------------------------------------------------------------------

_PERCENTAGE = "must be in inclusive range [0, 100]"
_DETECTORS = (
    "must have at least one defined: totalFailures, gatewayFailures, localOriginFailures, "
    "successRate, failurePercentage"
)


def _positive(out: list[Violation], path: str, value: int | None) -> None:
    if value is not None and value <= 0:
        out.append(Violation(path, "must be greater than 0"))


def _percentage(out: list[Violation], path: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= 100:
        out.append(Violation(path, _PERCENTAGE))


def _factor(value: int | str) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(value) from None


def _validate_detectors(out: list[Violation], path: str, detectors: Detectors | None) -> None:
    if detectors is None:
        out.append(Violation(path, MUST_BE_DEFINED))
        return
    parts = (
        detectors.total_failures,
        detectors.gateway_failures,
        detectors.local_origin_failures,
        detectors.success_rate,
        detectors.failure_percentage,
    )
    if parts == (None,) * 5:
        out.append(Violation(path, _DETECTORS))
        return
    for name, consecutive in (
        ("totalFailures", detectors.total_failures),
        ("gatewayFailures", detectors.gateway_failures),
        ("localOriginFailures", detectors.local_origin_failures),
    ):
        if consecutive is not None:
            _positive(out, f"{path}.{name}.consecutive", consecutive.consecutive)
    rate = detectors.success_rate
    if rate is not None:
        _positive(out, f"{path}.successRate.minimumHosts", rate.minimum_hosts)
        _positive(out, f"{path}.successRate.requestVolume", rate.request_volume)
        if rate.standard_deviation_factor is not None:
            at = f"{path}.successRate.standardDeviationFactor"
            try:
                if _factor(rate.standard_deviation_factor) <= 0:
                    out.append(Violation(at, "must be greater than 0"))
            except ValueError:
                out.append(Violation(at, "invalid number"))
    percentage = detectors.failure_percentage
    if percentage is not None:
        at = f"{path}.failurePercentage"
        _positive(out, f"{at}.minimumHosts", percentage.minimum_hosts)
        _positive(out, f"{at}.requestVolume", percentage.request_volume)
        _percentage(out, f"{at}.threshold", percentage.threshold)


def _validate_conf(conf: Conf | None, path: str, top: str, out: list[Violation]) -> None:
    if conf is None or (conf.connection_limits is None and conf.outlier_detection is None):
        out.append(
            Violation(
                path,
                "at least one of: 'connectionLimits' or 'outlierDetection' should be configured",
            )
        )
        return
    limits = conf.connection_limits
    if limits is not None:
        at = f"{path}.connectionLimits"
        _positive(out, f"{at}.maxConnections", limits.max_connections)
        _positive(out, f"{at}.maxConnectionPools", limits.max_connection_pools)
        _positive(out, f"{at}.maxPendingRequests", limits.max_pending_requests)
        _positive(out, f"{at}.maxRetries", limits.max_retries)
        _positive(out, f"{at}.maxRequests", limits.max_requests)
    outlier = conf.outlier_detection
    if outlier is not None:
        at = f"{path}.outlierDetection"
        check_duration(out, f"{at}.interval", outlier.interval, positive=True)
        check_duration(out, f"{at}.baseEjectionTime", outlier.base_ejection_time, positive=True)
        _percentage(out, f"{at}.maxEjectionPercent", outlier.max_ejection_percent)
        _validate_detectors(out, f"{at}.detectors", outlier.detectors)


def _validate_lists(spec: PolicySpec[Any], out: list[Violation]) -> None:
    if not spec.to and not spec.from_:
        out.append(Violation("spec", "at least one of 'from', 'to' has to be defined"))


KIND = register(
    PolicyKind(
        name="MeshCircuitBreaker",
        cls=MeshCircuitBreaker,
        plural="meshcircuitbreakers",
        conf_type=Conf,
        top_kinds=(MESH, MESH_SUBSET, MESH_SERVICE, MESH_GATEWAY, MESH_SERVICE_SUBSET),
        to_kinds=(MESH, MESH_SERVICE),
        from_kinds=(MESH,),
        validate_conf=_validate_conf,
        validate_lists=_validate_lists,
        order=10,
    )
)


# --- Envoy ---------------------------------------------------------------------------------


def _u32(target: Any, value: int) -> None:
    target.value = value
    target.SetInParent()


def _connection_limits(cluster: cluster_pb2.Cluster, limits: ConnectionLimits) -> None:
    cluster.ClearField("circuit_breakers")
    threshold = cluster.circuit_breakers.thresholds.add(priority=base_pb2.DEFAULT)
    for field, value in (
        ("max_connection_pools", limits.max_connection_pools),
        ("max_connections", limits.max_connections),
        ("max_pending_requests", limits.max_pending_requests),
        ("max_retries", limits.max_retries),
        ("max_requests", limits.max_requests),
    ):
        if value is not None:
            _u32(getattr(threshold, field), value)


def _outlier_detection(cluster: cluster_pb2.Cluster, conf: OutlierDetection) -> None:
    if conf.disabled:
        return
    cluster.ClearField("outlier_detection")
    od: outlier_detection_pb2.OutlierDetection = cluster.outlier_detection
    od.SetInParent()
    if conf.interval is not None:
        set_duration(od.interval, nanoseconds(conf.interval) or 0)
    if conf.base_ejection_time is not None:
        set_duration(od.base_ejection_time, nanoseconds(conf.base_ejection_time) or 0)
    if conf.split_external_and_local_errors is not None:
        od.split_external_local_origin_errors = conf.split_external_and_local_errors
    if conf.max_ejection_percent is not None:
        _u32(od.max_ejection_percent, conf.max_ejection_percent)
    detectors = conf.detectors or Detectors()
    for consecutive, enforcing, threshold in (
        (detectors.total_failures, od.enforcing_consecutive_5xx, od.consecutive_5xx),
        (
            detectors.local_origin_failures,
            od.enforcing_consecutive_local_origin_failure,
            od.consecutive_local_origin_failure,
        ),
        (
            detectors.gateway_failures,
            od.enforcing_consecutive_gateway_failure,
            od.consecutive_gateway_failure,
        ),
    ):
        if consecutive is None or consecutive.consecutive is None:
            _u32(enforcing, 0)
        else:
            _u32(enforcing, 100)
            _u32(threshold, consecutive.consecutive)
    if conf.detectors is None:
        return  # Kuma leaves success rate and failure percentage unset then
    rate = detectors.success_rate
    enforced = 0 if rate is None else 100
    _u32(od.enforcing_success_rate, enforced)
    _u32(od.enforcing_local_origin_success_rate, enforced)
    if rate is not None:
        if rate.minimum_hosts is not None:
            _u32(od.success_rate_minimum_hosts, rate.minimum_hosts)
        if rate.request_volume is not None:
            _u32(od.success_rate_request_volume, rate.request_volume)
        if rate.standard_deviation_factor is not None:
            factor = _factor(rate.standard_deviation_factor) * 1000
            _u32(od.success_rate_stdev_factor, int(factor))
    percentage = detectors.failure_percentage
    enforced = 0 if percentage is None else 100
    _u32(od.enforcing_failure_percentage, enforced)
    _u32(od.enforcing_failure_percentage_local_origin, enforced)
    if percentage is not None:
        if percentage.minimum_hosts is not None:
            _u32(od.failure_percentage_minimum_hosts, percentage.minimum_hosts)
        if percentage.request_volume is not None:
            _u32(od.failure_percentage_request_volume, percentage.request_volume)
        if percentage.threshold is not None:
            _u32(od.failure_percentage_threshold, percentage.threshold)


def configure_cluster(cluster: cluster_pb2.Cluster, conf: Conf) -> None:
    if conf.connection_limits is not None:
        _connection_limits(cluster, conf.connection_limits)
    if conf.outlier_detection is not None:
        _outlier_detection(cluster, conf.outlier_detection)


class MeshCircuitBreakerPlugin(PolicyPlugin):
    kind = KIND

    def outbound_cluster(
        self, cluster: cluster_pb2.Cluster, policies: KindPolicies, service: str, protocol: str
    ) -> None:
        conf: Conf | None = policies.to_conf(service_element(service))
        if conf is not None:
            configure_cluster(cluster, conf)

    def inbound_input(self, policies: KindPolicies, inbound: InboundKey) -> Hashable:
        return from_rule_input(policies, inbound)  # what from_conf(inbound, {}) reads

    def inbound_cluster(
        self,
        cluster: cluster_pb2.Cluster,
        policies: KindPolicies,
        inbound: InboundKey,
        protocol: str,
    ) -> None:
        conf: Conf | None = policies.from_conf(inbound, {})
        if conf is not None:
            configure_cluster(cluster, conf)


PLUGIN = register_plugin(MeshCircuitBreakerPlugin())


class MeshCircuitBreakerGateway(GatewayPlugin):
    """Kuma's applyToGateways: a backend's cluster gets the port's ``to`` rule for its
    service."""

    kind = KIND

    def cluster(self, cluster: cluster_pb2.Cluster, policies: KindPolicies, at: Reach) -> None:
        rules = listener_rules(policies, at.port)
        conf: Conf | None = (
            None if rules is None else policies.conf(rules.compute(service_element(at.service)))
        )
        if conf is not None:
            configure_cluster(cluster, conf)


register_gateway_plugin(MeshCircuitBreakerGateway())
