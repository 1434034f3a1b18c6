"""MeshRateLimit (Kuma ``pkg/plugins/policies/meshratelimit``): local rate limits on a
proxy's inbounds, per ``from`` rule (clients: Mesh only, as in Kuma 2.7).

Schema: ``default.local.http`` (``disabled``, ``requestRate {num, interval}``,
``onRateLimit {status, headers {set, add}}``) and ``default.local.tcp`` (``disabled``,
``connectionRate {num, interval}``), with Kuma's validation: ``from`` only when the top-level
targetRef excludes gateways, ``to`` only when it includes them (MeshGateway, MeshHTTPRoute, or
Mesh/MeshSubset without a proxyTypes restriction to Sidecar; Kuma's ``IncludesGateways``).

Envoy change, as Kuma's plugin on each inbound the policy selects, for every filter chain:
HTTP gets the ``envoy.filters.http.local_ratelimit`` filter before the router (no bucket of
its own) and, on each route, the per-route ``LocalRateLimit`` with the token bucket, 100 %
enabled and enforced, the status and response headers (Kuma's ``NewRateLimitConfiguration``);
TCP gets the network ``LocalRateLimit`` in front of the chain's filters. The same change on
the chain a ZoneEgress serves a selected ExternalService with (``kuma.policies.egress``).
Gateways (``to``) are
validated and stored; this control plane serves no builtin gateway, so nothing is applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2 as http_rl_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.local_ratelimit.v3 import (
    local_rate_limit_pb2 as tcp_rl_pb2,
)

from kuma.resources.errors import Violation
from kuma.resources.model import (
    MESH,
    MESH_GATEWAY,
    MESH_HTTP_ROUTE,
    MESH_SUBSET,
    Policy,
    PolicyConf,
    PolicySpec,
    TargetRef,
)
from kuma.resources.policy import ALL_TOP_KINDS, PolicyKind, register
from kuma.resources.validation.common import DURATION_FORMAT

from .conf import MILLISECOND, nanoseconds
from .decoded import settle
from .egress import EGRESS_INBOUND
from .gateway import (
    HTTP_LISTENERS,
    GatewayPlugin,
    listener_rules,
    per_route,
    register_gateway_plugin,
)
from .matching import InboundKey, KindPolicies
from .plugin import (
    HTTP_PROTOCOLS,
    PolicyPlugin,
    insert_before_router,
    register_plugin,
    set_duration,
    update_hcm,
)

HTTP_FILTER = "envoy.filters.http.local_ratelimit"
TCP_FILTER = "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit"
_MIN_INTERVAL = 50 * MILLISECOND


class Rate(PolicyConf, frozen=True):
    num: int = 0
    interval: str = "0s"


class HeaderValue(PolicyConf, frozen=True):
    name: str
    value: str


class HeaderModifier(PolicyConf, frozen=True):
    set: tuple[HeaderValue, ...] = ()
    add: tuple[HeaderValue, ...] = ()


class OnRateLimit(PolicyConf, frozen=True):
    status: int | None = None
    headers: HeaderModifier | None = None


class LocalHttp(PolicyConf, frozen=True):
    disabled: bool | None = None
    request_rate: Rate | None = None
    on_rate_limit: OnRateLimit | None = None


class LocalTcp(PolicyConf, frozen=True):
    disabled: bool | None = None
    connection_rate: Rate | None = None


class Local(PolicyConf, frozen=True):
    http: LocalHttp | None = None
    tcp: LocalTcp | None = None


class Conf(PolicyConf, frozen=True):
    local: Local | None = None


class MeshRateLimit(Policy, tag="MeshRateLimit", frozen=True):
    spec: PolicySpec[Conf] = msgspec.field(default_factory=PolicySpec)
    TYPE: ClassVar[str] = "MeshRateLimit"


def includes_gateways(ref: TargetRef) -> bool:
    """Kuma's ``IncludesGateways``: the top-level targetRef may select gateways."""
    mesh_kind = ref.kind in (MESH, MESH_SUBSET)
    gateway_type = not ref.proxy_types or "Gateway" in ref.proxy_types
    return ref.kind in (MESH_GATEWAY, MESH_HTTP_ROUTE) or (mesh_kind and gateway_type)


def validate_gateway_lists(spec: PolicySpec[Any], out: list[Violation]) -> None:
    """Kuma's rule for kinds with both lists: ``from`` only off gateways, ``to`` only on."""
    gateways = includes_gateways(spec.target_ref)
    if gateways and spec.from_:
        out.append(Violation("spec.from", "must not be defined"))
    if not gateways and spec.to:
        out.append(Violation("spec.to", "must not be defined"))


def _at_least_one(path: str, fields: str) -> Violation:
    return Violation(path, f"must have at least one defined: {fields}")


def _validate_rate(rate: Rate, path: str, out: list[Violation]) -> None:
    if rate.num <= 0:
        out.append(Violation(f"{path}.num", "must be greater than 0"))
    try:
        interval = nanoseconds(rate.interval, 0) or 0
    except ValueError:
        out.append(Violation(f"{path}.interval", DURATION_FORMAT))
        return
    if interval <= _MIN_INTERVAL:
        out.append(Violation(f"{path}.interval", "must be greater than: 50ms"))


def _validate_conf(conf: Conf | None, path: str, top: str, out: list[Violation]) -> None:
    path = f"{path}.local"
    local = conf.local if conf is not None else None
    if local is None:
        out.append(Violation(path, "must be defined"))
        return
    if local.http is None and local.tcp is None:
        out.append(_at_least_one(path, "tcp, http"))
    http = local.http
    if http is not None:
        if http.disabled is None and http.request_rate is None and http.on_rate_limit is None:
            out.append(_at_least_one(f"{path}.http", "disabled, requestRate, onRateLimit"))
        else:
            if http.request_rate is not None:
                _validate_rate(http.request_rate, f"{path}.http.requestRate", out)
            on_limit = http.on_rate_limit
            if on_limit is not None and on_limit.status is not None and on_limit.status <= 0:
                out.append(Violation(f"{path}.http.onRateLimit.status", "must be greater than 0"))
    tcp = local.tcp
    if tcp is not None:
        if tcp.disabled is None and tcp.connection_rate is None:
            out.append(_at_least_one(f"{path}.tcp", "disabled, connectionRate"))
        elif tcp.connection_rate is not None:
            _validate_rate(tcp.connection_rate, f"{path}.tcp.connectionRate", out)


KIND = register(
    PolicyKind(
        name="MeshRateLimit",
        cls=MeshRateLimit,
        plural="meshratelimits",
        conf_type=Conf,
        top_kinds=ALL_TOP_KINDS,
        to_kinds=(MESH,),
        from_kinds=(MESH,),
        validate_conf=_validate_conf,
        validate_lists=validate_gateway_lists,
        gateway_listener_tags=True,
        order=7,
    )
)


# --- Envoy ---------------------------------------------------------------------------------


def route_rate_limit(http: LocalHttp) -> http_rl_pb2.LocalRateLimit | None:
    """Kuma's ``RateLimitConfigurationFromPolicy`` + ``NewRateLimitConfiguration``: the
    per-route filter config, or None (disabled, or no rate)."""
    if http.disabled or http.request_rate is None:
        return None
    rate = http.request_rate
    config = http_rl_pb2.LocalRateLimit(stat_prefix="rate_limit")
    config.token_bucket.max_tokens = rate.num
    config.token_bucket.tokens_per_fill.value = rate.num
    set_duration(config.token_bucket.fill_interval, nanoseconds(rate.interval, 0) or 0)
    for field, key in ((config.filter_enabled, "enabled"), (config.filter_enforced, "enforced")):
        field.default_value.numerator = 100
        field.runtime_key = f"local_rate_limit_{key}"
    on_limit = http.on_rate_limit
    if on_limit is not None:
        if on_limit.status:
            config.status.code = on_limit.status
        headers = on_limit.headers or HeaderModifier()
        for header in headers.add:
            option = config.response_headers_to_add.add()
            option.header.key, option.header.value = header.name, header.value
        for header in headers.set:
            # Kuma splits a set value on commas, one header each, overwriting.
            for value in header.value.split(","):
                option = config.response_headers_to_add.add()
                option.header.key, option.header.value = header.name, value
                option.append_action = option.OVERWRITE_IF_EXISTS_OR_ADD
    return config


def _http_chain(chain: listener_components_pb2.FilterChain, http: LocalHttp) -> None:
    config = route_rate_limit(http)
    if config is None:
        return

    def change(manager: hcm_pb2.HttpConnectionManager) -> None:
        for host in manager.route_config.virtual_hosts:
            if len(host.routes) > 1:  # Kuma: the routes of an old RateLimit policy
                return
            for route in host.routes:
                _add_to_route(route, config)
        if any(f.name == HTTP_FILTER for f in manager.http_filters):
            return
        added = hcm_pb2.HttpFilter(name=HTTP_FILTER)
        added.typed_config.Pack(http_rl_pb2.LocalRateLimit(stat_prefix="rate_limit"))
        insert_before_router(manager, [added])

    update_hcm(chain, change)


def _add_to_route(route: route_components_pb2.Route, config: http_rl_pb2.LocalRateLimit) -> None:
    if HTTP_FILTER in route.typed_per_filter_config:
        return
    route.typed_per_filter_config[HTTP_FILTER].Pack(config)


def _tcp_chain(chain: listener_components_pb2.FilterChain, tcp: LocalTcp) -> None:
    if tcp.disabled or tcp.connection_rate is None:
        return
    rate = tcp.connection_rate
    config = tcp_rl_pb2.LocalRateLimit(stat_prefix="tcp_rate_limit")
    config.token_bucket.max_tokens = rate.num
    config.token_bucket.tokens_per_fill.value = rate.num
    set_duration(config.token_bucket.fill_interval, nanoseconds(rate.interval, 0) or 0)
    settle(chain)  # the filters are copied and reordered: nothing may stay decoded
    filters = list(chain.filters)
    del chain.filters[:]
    added = chain.filters.add()
    added.name = TCP_FILTER
    added.typed_config.Pack(config)
    chain.filters.extend(filters)


class MeshRateLimitPlugin(PolicyPlugin):
    kind = KIND

    def inbound_listener(
        self,
        listener: listener_pb2.Listener,
        policies: KindPolicies,
        inbound: InboundKey,
        protocol: str,
    ) -> None:
        for chain in listener.filter_chains:
            _configure_chain(chain, policies, inbound, protocol)

    def egress_chain(
        self, chain: listener_components_pb2.FilterChain, policies: KindPolicies, protocol: str
    ) -> None:
        """Kuma's ``applyToEgress``: the chain of the external service, as an inbound's
        (``from`` allows only ``Mesh``: one conf for every client)."""
        _configure_chain(chain, policies, EGRESS_INBOUND, protocol)


def _configure_chain(
    chain: listener_components_pb2.FilterChain,
    policies: KindPolicies,
    inbound: InboundKey,
    protocol: str,
) -> None:
    rules = policies.from_rules.get(inbound)
    if rules is None:
        return
    conf: Conf | None = policies.conf(rules.compute({}))
    if conf is None or conf.local is None:
        return
    # Kuma configures both on every chain: the HTTP part finds no connection manager on a
    # TCP chain and the TCP filter goes in front of either.
    if conf.local.http is not None and protocol in HTTP_PROTOCOLS:
        _http_chain(chain, conf.local.http)
    if conf.local.tcp is not None:
        _tcp_chain(chain, conf.local.tcp)


PLUGIN = register_plugin(MeshRateLimitPlugin())


class MeshRateLimitGateway(GatewayPlugin):
    """Kuma's ``applyToGateways``/``configureGateway``: on an HTTP(S) port (Kuma reaches a
    port through its route configurations, so TCP and TLS ports are left alone), its chains as
    an inbound's (the TCP filter in front; the HTTP filter is the gateway's already) and each
    route the rule of its MeshHTTPRoute rule or the port's. Kuma configures the chains once
    per route configuration: an HTTPS port with several hostnames gets its TCP filter as many
    times; here once."""

    kind = KIND

    def listener(
        self,
        listener: listener_pb2.Listener,
        policies: KindPolicies,
        port: InboundKey,
        protocol: str,
    ) -> None:
        rules = listener_rules(policies, port)
        if rules is None or protocol not in HTTP_LISTENERS:
            return
        conf: Conf | None = policies.conf(rules.compute({}))
        if conf is None or conf.local is None:
            return
        for chain in listener.filter_chains:
            if conf.local.http is not None:
                _http_chain(chain, conf.local.http)
            if conf.local.tcp is not None:
                _tcp_chain(chain, conf.local.tcp)

    def route_configuration(
        self,
        config: route_pb2.RouteConfiguration,
        policies: KindPolicies,
        port: InboundKey,
        services: Sequence[str],
    ) -> None:
        for route, limit in per_route(config, policies, port, _route_limit):
            _add_to_route(route, limit)


def _route_limit(conf: Conf | None) -> http_rl_pb2.LocalRateLimit | None:
    if conf is None or conf.local is None or conf.local.http is None:
        return None
    return route_rate_limit(conf.local.http)


register_gateway_plugin(MeshRateLimitGateway())
