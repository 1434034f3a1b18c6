"""MeshFaultInjection's Envoy change on inbound listeners, compared with Kuma's plugin golden
files (pkg/plugins/policies/meshfaultinjection/plugin/v1alpha1/testdata/basic_listener_1 and
_2: the same fault filters, in the same order, for the same rules)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kuma.policies.meshfaultinjection import HTTP_FILTER, bandwidth_kbps, fractional_percent

from .inbound_listeners import (
    HTTP_INBOUND,
    SIDECARS,
    TCP_INBOUND,
    inbound_listeners,
    valid_policy,
)

FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
#: Kuma's rules of the golden: demo-client gets the first conf, everybody else the second.
FOR_DEMO_CLIENT = {
    "abort": {"httpStatus": 444, "percentage": "12"},
    "delay": {"value": "55s", "percentage": "55"},
    "responseBandwidth": {"limit": "111Mbps", "percentage": "62.9"},
}
FOR_OTHERS = {
    "abort": {"httpStatus": 111, "percentage": 11},
    "delay": {"value": "22s", "percentage": 22},
    "responseBandwidth": {"limit": "333Mbps", "percentage": "33.3"},
}
DEMO_CLIENT_REGEX = r".*&kuma.io/service=[^&]*demo-client[,&].*"
#: The golden's two fault filters (basic_listener_1.golden.yaml), before the router.
GOLDEN_FILTERS = [
    {
        "name": HTTP_FILTER,
        "typedConfig": {
            "@type": FAULT_TYPE,
            "abort": {"httpStatus": 444, "percentage": {"numerator": 12}},
            "delay": {"fixedDelay": "55s", "percentage": {"numerator": 55}},
            "headers": [
                {"name": "x-kuma-tags", "stringMatch": {"safeRegex": {"regex": DEMO_CLIENT_REGEX}}}
            ],
            "responseRateLimit": {
                "fixedLimit": {"limitKbps": "111000"},
                "percentage": {"denominator": "TEN_THOUSAND", "numerator": 6290},
            },
        },
    },
    {
        "name": HTTP_FILTER,
        "typedConfig": {
            "@type": FAULT_TYPE,
            "abort": {"httpStatus": 111, "percentage": {"numerator": 11}},
            "delay": {"fixedDelay": "22s", "percentage": {"numerator": 22}},
            "headers": [
                {
                    "invertMatch": True,
                    "name": "x-kuma-tags",
                    "stringMatch": {"safeRegex": {"regex": DEMO_CLIENT_REGEX}},
                }
            ],
            "responseRateLimit": {
                "fixedLimit": {"limitKbps": "333000"},
                "percentage": {"denominator": "MILLION", "numerator": 333000},
            },
        },
    },
]


def _listeners(from_: list[dict[str, Any]], top: dict[str, Any]) -> dict[str, Any]:
    spec = {"targetRef": top, "from": from_}
    return inbound_listeners(valid_policy("MeshFaultInjection", spec))


def _http_filters(listener: dict[str, Any]) -> list[dict[str, Any]]:
    (chain,) = listener["filterChains"]
    (manager,) = [f["typedConfig"] for f in chain["filters"] if "routeConfig" in f["typedConfig"]]
    return list(manager["httpFilters"])


GOLDEN_FROM = [
    {"targetRef": {"kind": "Mesh"}, "default": {"http": [FOR_OTHERS]}},
    {
        "targetRef": {"kind": "MeshService", "name": "demo-client"},
        "default": {"http": [FOR_DEMO_CLIENT]},
    },
]


def test_http_inbound_gets_one_fault_filter_per_rule_before_the_router() -> None:
    listeners = _listeners(GOLDEN_FROM, SIDECARS)
    filters = _http_filters(listeners[HTTP_INBOUND])
    assert filters[:-1] == GOLDEN_FILTERS
    assert filters[-1]["name"] == "envoy.filters.http.router"
    # basic_listener_2: a TCP inbound is left as it was.
    assert HTTP_FILTER not in json.dumps(listeners[TCP_INBOUND])


def test_faults_of_one_rule_keep_their_order_and_a_mesh_rule_matches_no_header() -> None:
    faults = [
        {"abort": {"httpStatus": 503, "percentage": 100}},
        {"delay": {"value": "1s", "percentage": "0.5"}},
    ]
    listeners = _listeners([{"targetRef": {"kind": "Mesh"}, "default": {"http": faults}}], SIDECARS)
    configs = [f["typedConfig"] for f in _http_filters(listeners[HTTP_INBOUND])]
    assert configs[:2] == [
        {"@type": FAULT_TYPE, "abort": {"httpStatus": 503, "percentage": {"numerator": 100}}},
        {
            "@type": FAULT_TYPE,
            "delay": {
                "fixedDelay": "1s",
                "percentage": {"denominator": "TEN_THOUSAND", "numerator": 50},
            },
        },
    ]


def test_with_rate_limit_both_sit_before_the_router_faults_first() -> None:
    """Kuma's plugin order: MeshFaultInjection before MeshRateLimit, each inserting before
    the router, so the faults come first."""
    fault = valid_policy(
        "MeshFaultInjection",
        {
            "targetRef": SIDECARS,
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"http": [FOR_OTHERS]}}],
        },
    )
    rate = {"local": {"http": {"requestRate": {"num": 5, "interval": "1s"}}}}
    limit = valid_policy(
        "MeshRateLimit",
        {"targetRef": SIDECARS, "from": [{"targetRef": {"kind": "Mesh"}, "default": rate}]},
    )
    listener = inbound_listeners(fault, limit)[HTTP_INBOUND]
    names = [f["name"] for f in _http_filters(listener)]
    assert names[-3:] == [
        HTTP_FILTER,
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.router",
    ]


def test_unselected_or_empty_changes_nothing() -> None:
    empty = _listeners([{"targetRef": {"kind": "Mesh"}, "default": {"http": []}}], SIDECARS)
    other = _listeners(GOLDEN_FROM, {"kind": "MeshService", "name": "nobody"})
    for listeners in (empty, other):
        assert HTTP_FILTER not in json.dumps(listeners)


@pytest.mark.parametrize(
    ("percentage", "numerator", "denominator"),
    [
        (12, 12, "HUNDRED"),
        ("12.5", 1250, "TEN_THOUSAND"),
        ("62.9", 6290, "TEN_THOUSAND"),
        ("33.3", 333000, "MILLION"),
        ("0.12345", 1235, "MILLION"),
    ],
)
def test_percentages_convert_as_kuma_on_floats(
    percentage: int | str, numerator: int, denominator: str
) -> None:
    converted = fractional_percent(percentage)
    assert (converted.numerator, converted.DenominatorType.Name(converted.denominator)) == (
        numerator,
        denominator,
    )


def test_bandwidth_in_kbps() -> None:
    assert [bandwidth_kbps(x) for x in ("10kbps", "111Mbps", "2 Gbps", "100mbps")] == [
        10,
        111_000,
        2_000_000,
        None,
    ]
