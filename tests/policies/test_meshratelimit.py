"""MeshRateLimit's Envoy change on inbound listeners, compared with Kuma's plugin golden
files (pkg/plugins/policies/meshratelimit/plugin/v1alpha1/testdata/basic_listener_1 and _2:
the same filters, per-route config and TCP filter for the same input)."""

from __future__ import annotations

import json
from typing import Any

from kuma.policies.meshratelimit import HTTP_FILTER

from .inbound_listeners import SIDECARS, inbound_listeners, valid_policy

#: Kuma's basic case: one conf for every client, HTTP and TCP.
LOCAL = {
    "http": {
        "requestRate": {"num": 100, "interval": "10s"},
        "onRateLimit": {
            "status": 444,
            "headers": {
                "add": [
                    {"name": "x-kuma-rate-limit-header", "value": "test-value"},
                    {"name": "x-kuma-rate-limit", "value": "other-value"},
                ],
                "set": [{"name": "x-kuma-rate-limit-header-set", "value": "test-value"}],
            },
        },
    },
    "tcp": {"connectionRate": {"num": 100, "interval": "99ms"}},
}
#: The golden's per-route config (basic_listener_1.golden.yaml).
ROUTE_CONFIG = {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
    "filterEnabled": {"defaultValue": {"numerator": 100}, "runtimeKey": "local_rate_limit_enabled"},
    "filterEnforced": {
        "defaultValue": {"numerator": 100},
        "runtimeKey": "local_rate_limit_enforced",
    },
    "responseHeadersToAdd": [
        {"header": {"key": "x-kuma-rate-limit-header", "value": "test-value"}},
        {"header": {"key": "x-kuma-rate-limit", "value": "other-value"}},
        {
            "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD",
            "header": {"key": "x-kuma-rate-limit-header-set", "value": "test-value"},
        },
    ],
    "statPrefix": "rate_limit",
    "status": {"code": 444},
    "tokenBucket": {"fillInterval": "10s", "maxTokens": 100, "tokensPerFill": 100},
}
#: The golden's TCP filter (basic_listener_2.golden.yaml), in front of the tcp_proxy.
TCP_FILTER = {
    "name": "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
    "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3."
        "LocalRateLimit",
        "statPrefix": "tcp_rate_limit",
        "tokenBucket": {"fillInterval": "0.099s", "maxTokens": 100, "tokensPerFill": 100},
    },
}


def _listeners(local: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    from_ = [{"targetRef": {"kind": "Mesh"}, "default": {"local": local}}]
    return inbound_listeners(valid_policy("MeshRateLimit", {"targetRef": top, "from": from_}))


def _hcm(listener: dict[str, Any]) -> dict[str, Any]:
    (chain,) = listener["filterChains"]
    (manager,) = [f["typedConfig"] for f in chain["filters"] if "routeConfig" in f["typedConfig"]]
    return dict(manager)


def test_http_inbound_gets_the_filter_before_the_router_and_the_bucket_on_its_route() -> None:
    listener = _listeners(LOCAL, SIDECARS)["inbound:127.0.0.1:17777"]
    manager = _hcm(listener)
    names = [f["name"] for f in manager["httpFilters"]]
    assert names[-2:] == [HTTP_FILTER, "envoy.filters.http.router"]
    (rate_filter,) = [f for f in manager["httpFilters"] if f["name"] == HTTP_FILTER]
    assert rate_filter["typedConfig"] == {
        "@type": ROUTE_CONFIG["@type"],
        "statPrefix": "rate_limit",
    }
    (host,) = manager["routeConfig"]["virtualHosts"]
    for route in host["routes"]:
        assert route["typedPerFilterConfig"] == {HTTP_FILTER: ROUTE_CONFIG}
    # Kuma puts the TCP filter in front of every chain the policy reaches, HTTP ones too.
    (chain,) = listener["filterChains"]
    assert chain["filters"][0] == TCP_FILTER


def test_tcp_inbound_gets_the_network_filter_first() -> None:
    listener = _listeners(LOCAL, SIDECARS)["inbound:127.0.0.1:17778"]
    (chain,) = listener["filterChains"]
    assert chain["filters"][0] == TCP_FILTER
    assert chain["filters"][-1]["name"] == "envoy.filters.network.tcp_proxy"


def test_disabled_or_unselected_changes_nothing() -> None:
    plain = _listeners({"http": {"disabled": True}, "tcp": {"disabled": True}}, SIDECARS)
    other = _listeners(LOCAL, {"kind": "MeshService", "name": "nobody"})
    for listeners in (plain, other):
        text = json.dumps(listeners)
        assert "local_ratelimit" not in text
