"""MeshFaultInjection (Kuma ``pkg/plugins/policies/meshfaultinjection``): HTTP faults on a
proxy's inbounds, per ``from`` rule (clients).

Schema: ``default.http``, a list of faults, each with ``abort {httpStatus, percentage}``,
``delay {value, percentage}`` and ``responseBandwidth {limit, percentage}`` (percentages an
int or a decimal string). Kuma's validation and messages, including its paths
(``http.abort[i]``, ``http.responseBandwidth[i].responseBandwidth``); ``from`` only when the
top-level targetRef excludes gateways, ``to`` only when it includes them.

Envoy change, as Kuma's plugin, on each http/http2 inbound the policy selects (grpc, tcp:
nothing), in every filter chain: for every ``from`` rule, in the rules' order, one
``envoy.filters.http.fault`` filter per fault of the rule, just before the router. A rule
for a subset of clients matches their ``x-kuma-tags`` request header with Kuma's regex (its
positive tags in one matcher, its negated tags in an inverted one). Envoy matches no header
matcher, inverted or not, on a request without it, so a policy with a ``from`` rule other
than ``Mesh`` makes its mesh send the callers' tags (``kuma.policies.caller_tags``): the
outbound routes of every proxy of the mesh then add the header, as Kuma's do.
Other differences: gateways (``to``) are validated and stored, but this control plane
serves no builtin gateway, so nothing is applied there (a ZoneEgress applies the ``from``
rules on the chain of each ExternalService selected: ``kuma.policies.egress``); a ``limit``
that passes Kuma's (unanchored) unit check but has no number (``100mbps``) makes Kuma fail
the proxy's whole config, here that fault just gets no response rate limit.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import ClassVar

import msgspec
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.v3 import percent_pb2

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

from .caller_tags import TAGS_HEADER, register_caller_tags_need
from .conf import MUST_BE_DEFINED, check_duration, nanoseconds
from .egress import EGRESS_INBOUND
from .gateway import HTTP_LISTENERS, GatewayPlugin, listener_rules, register_gateway_plugin
from .matching import InboundKey, KindPolicies
from .meshratelimit import validate_gateway_lists
from .plugin import (
    PolicyPlugin,
    insert_before_router,
    register_plugin,
    set_duration,
    update_hcm,
)
from .rules import Subset

HTTP_FILTER = "envoy.filters.http.fault"
#: The callers' tags header (``kuma.xds.generate.names``, which imports this package).
#: Kuma applies faults on these inbound protocols only (not grpc).
FAULT_PROTOCOLS = ("http", "http2")
# Kuma's BandwidthRegex, unanchored as Kuma uses it; Go's \d and \s are ASCII only.
_BANDWIDTH = re.compile(r"([0-9]*)[\t\n\f\r ]?([GMk]?bps)")
_KBPS_FACTOR = {"kbps": 1, "Mbps": 1000, "Gbps": 1_000_000}


class Abort(PolicyConf, frozen=True):
    http_status: int = 0
    percentage: int | str = 0


class Delay(PolicyConf, frozen=True):
    value: str = "0s"
    percentage: int | str = 0


class ResponseBandwidth(PolicyConf, frozen=True):
    # Kuma's own cases write ``limit: 1000`` (a number); it is checked as its text.
    limit: str | int = ""
    percentage: int | str = 0


class Fault(PolicyConf, frozen=True):
    abort: Abort | None = None
    delay: Delay | None = None
    response_bandwidth: ResponseBandwidth | None = None


class Conf(PolicyConf, frozen=True):
    http: tuple[Fault, ...] | None = None


class MeshFaultInjection(Policy, tag="MeshFaultInjection", frozen=True):
    spec: PolicySpec[Conf] = msgspec.field(default_factory=PolicySpec)
    TYPE: ClassVar[str] = "MeshFaultInjection"


# --- validation ----------------------------------------------------------------------------


def _decimal(value: int | str) -> Decimal:
    """Kuma's NewDecimalFromIntOrString (ValueError: not a number)."""
    try:
        number = Decimal(value) if isinstance(value, int) else Decimal(value.strip() or "x")
    except InvalidOperation:
        raise ValueError(value) from None
    # shopspring's decimal takes neither spaces nor digit separators, Python's does.
    if not number.is_finite() or (
        isinstance(value, str) and (value != value.strip() or "_" in value)
    ):
        raise ValueError(value)
    return number


def _validate_percentage(value: int | str, path: str, out: list[Violation]) -> None:
    """Kuma's ValidatePercentage with 0 allowed."""
    try:
        number = _decimal(value)
    except ValueError:
        out.append(Violation(path, "string must be a valid number"))
        return
    if not 0 <= number <= 100:
        out.append(Violation(path, "must be in inclusive range [0.0, 100.0]"))


def _validate_conf(conf: Conf | None, path: str, top: str, out: list[Violation]) -> None:
    path = f"{path}.http"
    for index, fault in enumerate((conf.http if conf else None) or ()):
        # Kuma's paths put the index after the fault's kind.
        if fault.abort is not None:
            where = f"{path}.abort[{index}]"
            if not 100 <= fault.abort.http_status < 600:
                out.append(
                    Violation(f"{where}.httpStatus", "must be in inclusive range [100, 599]")
                )
            _validate_percentage(fault.abort.percentage, f"{where}.percentage", out)
        if fault.delay is not None:
            where = f"{path}.delay[{index}]"
            check_duration(out, f"{where}.value", fault.delay.value)
            _validate_percentage(fault.delay.percentage, f"{where}.percentage", out)
        if fault.response_bandwidth is not None:
            where = f"{path}.responseBandwidth[{index}]"
            limit = str(fault.response_bandwidth.limit)
            if not limit:
                out.append(Violation(f"{where}.responseBandwidth", MUST_BE_DEFINED))
            elif not _BANDWIDTH.search(limit):
                out.append(
                    Violation(f"{where}.responseBandwidth", "must be in kbps/Mbps/Gbps units")
                )
            _validate_percentage(fault.response_bandwidth.percentage, f"{where}.percentage", out)


KIND = register(
    PolicyKind(
        name="MeshFaultInjection",
        cls=MeshFaultInjection,
        plural="meshfaultinjections",
        conf_type=Conf,
        top_kinds=(MESH, MESH_SUBSET, MESH_GATEWAY, MESH_SERVICE, MESH_SERVICE_SUBSET),
        to_kinds=(MESH,),
        from_kinds=(MESH, MESH_SUBSET, MESH_SERVICE_SUBSET, MESH_SERVICE),
        validate_conf=_validate_conf,
        validate_lists=validate_gateway_lists,
        gateway_listener_tags=True,
        order=6,
    )
)


# --- Envoy ---------------------------------------------------------------------------------


def fractional_percent(value: int | str) -> percent_pb2.FractionalPercent:
    """Kuma's ConvertPercentage, on the float64 it makes of the decimal (so ``33.3`` gives
    333000 per million, as float 33.3 * 100 is not whole)."""
    number = float(_decimal(value))
    if math.floor(number) == number:
        return percent_pb2.FractionalPercent(numerator=int(number))
    if math.floor(number * 100) == number * 100:
        return percent_pb2.FractionalPercent(
            numerator=int(number * 100), denominator=percent_pb2.FractionalPercent.TEN_THOUSAND
        )
    return percent_pb2.FractionalPercent(
        numerator=math.floor(number * 10_000 + 0.5),  # Go's math.Round: half away from zero
        denominator=percent_pb2.FractionalPercent.MILLION,
    )


def bandwidth_kbps(limit: str) -> int | None:
    """Kuma's ConvertBandwidthToKbps (None where Kuma fails: no number before the unit)."""
    found = _BANDWIDTH.search(limit)
    if found is None or not found.group(1):
        return None
    return int(found.group(1)) * _KBPS_FACTOR.get(found.group(2), 0) or None


def tags_regex(tags: dict[str, str]) -> str:
    """Kuma's MatchingRegex over the ``x-kuma-tags`` header (``&key=value,...&``)."""
    parts = []
    for key in sorted(tags):
        value = "" if tags[key] == "*" else "[^&]*" + tags[key] + "[,&]"
        parts.append(f"&{key}=" + value.replace(".", r"\.") + ".*")
    return ".*" + "".join(parts)


def _header_matchers(subset: Subset) -> list[route_components_pb2.HeaderMatcher]:
    by_negation: dict[bool, dict[str, str]] = {False: {}, True: {}}
    for tag in subset:
        by_negation[tag.negated][tag.key] = tag.value
    matchers = []
    for negated in (False, True):
        if by_negation[negated]:
            matcher = route_components_pb2.HeaderMatcher(name=TAGS_HEADER, invert_match=negated)
            matcher.string_match.safe_regex.regex = tags_regex(by_negation[negated])
            matchers.append(matcher)
    return matchers


def fault_filter(fault: Fault, subset: Subset) -> hcm_pb2.HttpFilter:
    """One ``envoy.filters.http.fault`` filter for a fault of the rule of ``subset``."""
    config = fault_pb2.HTTPFault()
    if fault.delay is not None:
        set_duration(config.delay.fixed_delay, nanoseconds(fault.delay.value, 0) or 0)
        config.delay.percentage.CopyFrom(fractional_percent(fault.delay.percentage))
    if fault.abort is not None:
        config.abort.http_status = fault.abort.http_status
        config.abort.percentage.CopyFrom(fractional_percent(fault.abort.percentage))
    bandwidth = fault.response_bandwidth
    kbps = bandwidth_kbps(str(bandwidth.limit)) if bandwidth is not None else None
    if bandwidth is not None and kbps is not None:
        limit = common_fault_pb2.FaultRateLimit(percentage=fractional_percent(bandwidth.percentage))
        limit.fixed_limit.limit_kbps = kbps
        config.response_rate_limit.CopyFrom(limit)
    config.headers.extend(_header_matchers(subset))
    added = hcm_pb2.HttpFilter(name=HTTP_FILTER)
    added.typed_config.Pack(config)
    return added


class MeshFaultInjectionPlugin(PolicyPlugin):
    kind = KIND

    def inbound_listener(
        self,
        listener: listener_pb2.Listener,
        policies: KindPolicies,
        inbound: InboundKey,
        protocol: str,
    ) -> None:
        filters = _filters(policies, inbound, protocol)
        for chain in listener.filter_chains if filters else ():
            update_hcm(chain, lambda manager: insert_before_router(manager, filters))

    def egress_chain(
        self, chain: listener_components_pb2.FilterChain, policies: KindPolicies, protocol: str
    ) -> None:
        """Kuma's ``applyToEgress``: the same filters on the external service's chain, from
        the rules of the clients reaching it through the egress."""
        filters = _filters(policies, EGRESS_INBOUND, protocol)
        if filters:
            update_hcm(chain, lambda manager: insert_before_router(manager, filters))


def _filters(
    policies: KindPolicies, inbound: InboundKey, protocol: str
) -> list[hcm_pb2.HttpFilter]:
    rules = policies.from_rules.get(inbound)
    if rules is None or protocol not in FAULT_PROTOCOLS:
        return []
    # Every rule applies (not the one of a client): the header matchers pick the client.
    filters: list[hcm_pb2.HttpFilter] = []
    for rule in rules:
        conf: Conf = policies.conf(rule)
        filters.extend(fault_filter(fault, rule.subset) for fault in conf.http or ())
    return filters


PLUGIN = register_plugin(MeshFaultInjectionPlugin())


class MeshFaultInjectionGateway(GatewayPlugin):
    """Kuma's ``applyToGateways``: an HTTP(S) port's ``to`` rules, every one, as fault filters
    before the router (their subsets pick the clients by header, as ``from`` rules do)."""

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
        filters: list[hcm_pb2.HttpFilter] = []
        for rule in rules:
            conf: Conf = policies.conf(rule)
            filters.extend(fault_filter(fault, rule.subset) for fault in conf.http or ())
        for chain in listener.filter_chains if filters else ():
            update_hcm(chain, lambda manager: insert_before_router(manager, filters))


register_gateway_plugin(MeshFaultInjectionGateway())


def names_clients(policy: Policy) -> bool:
    """Whether a ``from`` rule names some clients (matched on their ``x-kuma-tags``)."""
    return any(item.target_ref.kind != MESH for item in policy.spec.from_)


register_caller_tags_need(KIND.name, names_clients)
