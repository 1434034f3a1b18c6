"""Filters and matches on a gateway route, as Kuma's gateway route builder sets them."""

from __future__ import annotations

import json
from typing import Any

from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.resources import decode
from kuma.xds import types
from kuma.xds.engine import Engine
from kuma.xds.gateway.route_action import canonical_header_key

from .helpers import BASE, GATEWAY, ROUTE_HEAD, events

SCENARIO = (
    f"{BASE}---\n{GATEWAY}---\n{ROUTE_HEAD}"
    + """\
        - matches:
            - path: {type: Exact, value: /app}
              method: GET
              headers:
                - {type: Prefix, name: x-p, value: v}
                - {name: x-e, value: "1"}
                - {type: Present, name: x-present}
                - {type: RegularExpression, name: x-r, value: "a.*"}
              queryParams:
                - {type: RegularExpression, name: q2, value: "b.*"}
                - {type: Exact, name: q1, value: one}
          default:
            backendRefs: [{kind: MeshService, name: web}]
            filters:
              - type: RequestHeaderModifier
                requestHeaderModifier:
                  set: [{name: x-set, value: s}, {name: Host, value: web.example}]
                  add: [{name: X-ADD, value: a}]
                  remove: [x-drop]
              - type: ResponseHeaderModifier
                responseHeaderModifier: {add: [{name: x-served-by, value: edge}]}
        - matches: [{path: {type: Exact, value: /old}}]
          default:
            filters:
              - type: RequestRedirect
                requestRedirect: {scheme: https, hostname: new.example, statusCode: 307}
"""
)


def routes() -> dict[str, Any]:
    engine = Engine()
    engine.apply_now(events(decode(SCENARIO)))
    body = engine.subscribe("default.edge-1").resources(types.ROUTE)["edge:HTTP:8000:*"].body
    config = json.loads(json_format.MessageToJson(route_pb2.RouteConfiguration.FromString(body)))
    return {r["match"]["path"]: r for r in config["virtualHosts"][0]["routes"]}


def test_matches_grouped_by_kind_headers_modified_and_a_redirect() -> None:
    found = routes()
    app = found["/app"]
    assert app["match"]["headers"] == [
        {"name": ":method", "stringMatch": {"exact": "GET"}},
        {"name": "x-e", "stringMatch": {"exact": "1"}},
        {"name": "x-r", "stringMatch": {"safeRegex": {"regex": "a.*"}}},
        {"name": "x-present", "presentMatch": True},
        {"name": "x-p", "prefixMatch": "v"},
    ]
    # Kuma 2.7 appends each regex parameter to the exact ones (its RegexQuery slice).
    assert app["match"]["queryParameters"] == [
        {"name": "q1", "stringMatch": {"exact": "one"}},
        {"name": "q1", "stringMatch": {"safeRegex": {"regex": "one"}}},
        {"name": "q2", "stringMatch": {"safeRegex": {"regex": "b.*"}}},
    ]
    assert app["route"]["hostRewriteLiteral"] == "web.example"
    assert app["requestHeadersToAdd"] == [
        {"header": {"key": "X-Set", "value": "s"}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "X-Add", "value": "a"}},
    ]
    assert app["requestHeadersToRemove"] == ["x-drop"]
    assert app["responseHeadersToAdd"] == [{"header": {"key": "X-Served-By", "value": "edge"}}]
    assert found["/old"]["redirect"] == {
        "schemeRedirect": "https",
        "hostRedirect": "new.example",
        "portRedirect": 8000,  # the listener's, as Kuma sets it when none is named
        "responseCode": "TEMPORARY_REDIRECT",
        "stripQuery": True,
    }
    assert "route" not in found["/old"]


def test_canonical_header_key_is_go_s() -> None:
    assert canonical_header_key("x-forwarded-FOR") == "X-Forwarded-For"
    assert canonical_header_key("host") == "Host"
    assert canonical_header_key("bad key") == "bad key"
