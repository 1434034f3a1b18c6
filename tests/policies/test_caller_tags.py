"""Kuma's ``x-kuma-tags`` request header on HTTP outbound routes, sent only in a mesh where a
policy consumes the callers' tags (a MeshFaultInjection naming clients)."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.policies import resolve
from kuma.policies.caller_tags import needs_caller_tags, serialize_tags, tag_set
from kuma.resources import Dataplane, from_document
from kuma.resources.model import Policy
from kuma.xds import types
from kuma.xds.generate.proxy import generate_proxy
from kuma.xds.generate.view import StaticMeshView

from .inbound_listeners import valid_policy
from .test_routes import dataplane, policy

ABORT = {"http": [{"abort": {"httpStatus": 418, "percentage": 100}}]}


def fault_injection(*clients: dict[str, Any]) -> Policy:
    """A MeshFaultInjection on backend with one ``from`` rule per client targetRef."""
    return valid_policy(
        "MeshFaultInjection",
        {
            "targetRef": {"kind": "MeshService", "name": "backend"},
            "from": [{"targetRef": client, "default": ABORT} for client in clients],
        },
    )


def test_serialization_is_kumas() -> None:
    # Kuma's TagsHeaderConfigurer cases (pkg/xds/envoy/routes/v3/tags_header_configurer_test.go).
    tags = {
        "tag2": {"value21"},
        "tag3": {"value33", "value31", "value32"},
        "tag1": {"value12", "value11"},
    }
    expected = "&tag1=value11,value12&&tag2=value21&&tag3=value31,value32,value33&"
    assert serialize_tags(tags) == expected
    assert serialize_tags({}) == ""


def test_tag_set_gathers_every_inbound() -> None:
    inbounds = [
        {"port": 8080, "servicePort": 80, "tags": {"kuma.io/service": "web", "version": "v2"}},
        {"port": 8081, "servicePort": 81, "tags": {"kuma.io/service": "admin"}},
    ]
    proxy = from_document(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "web",
            "networking": {"address": "10.0.0.3", "inbound": inbounds},
        }
    )
    assert isinstance(proxy, Dataplane)
    assert tag_set(proxy) == {"kuma.io/service": {"web", "admin"}, "version": {"v2"}}
    assert serialize_tags(tag_set(proxy)) == "&kuma.io/service=admin,web&&version=v2&"


def test_only_a_from_rule_naming_clients_needs_the_tags() -> None:
    assert not needs_caller_tags({})
    assert not needs_caller_tags({"MeshFaultInjection": [fault_injection({"kind": "Mesh"})]})
    named = fault_injection({"kind": "Mesh"}, {"kind": "MeshService", "name": "web"})
    assert needs_caller_tags({"MeshFaultInjection": [named]})
    subset = fault_injection({"kind": "MeshSubset", "tags": {"version": "v1"}})
    assert needs_caller_tags({"MeshFaultInjection": [subset]})
    # Kinds that never match the header do not turn it on.
    timeout = policy("MeshTimeout", "t", [{"targetRef": {"kind": "Mesh"}, "default": {}}])
    assert not needs_caller_tags({"MeshTimeout": [timeout]})


def _outbound_route_config(protocol: str, *policies: Policy) -> dict[str, Any]:
    web = dataplane(
        "web",
        {"kuma.io/service": "web", "kuma.io/protocol": "http"},
        [{"port": 10001, "tags": {"kuma.io/service": "backend"}}],
    )
    backend = dataplane("backend", {"kuma.io/service": "backend", "kuma.io/protocol": protocol})
    by_kind: dict[str, list[Policy]] = {}
    for p in policies:
        by_kind.setdefault(p.TYPE, []).append(p)
    view = StaticMeshView([web, backend])
    listeners = generate_proxy(web, view, 9901, policies=resolve(web, by_kind))[types.LISTENER]
    listener = json.loads(json_format.MessageToJson(listeners["outbound:127.0.0.1:10001"]))
    config: dict[str, Any] = listener["filterChains"][0]["filters"][0]["typedConfig"]
    return config


def test_outbound_routes_carry_the_callers_tags_when_the_mesh_needs_them() -> None:
    named = fault_injection({"kind": "MeshService", "name": "web"})
    config = _outbound_route_config("http", named)
    # As Kuma's meshhttproute basic.listeners.golden.yaml (the caller web, protocol http).
    assert config["routeConfig"]["requestHeadersToAdd"] == [
        {"header": {"key": "x-kuma-tags", "value": "&kuma.io/protocol=http&&kuma.io/service=web&"}}
    ]
    # Nothing else changes: the same listener as without the header.
    del config["routeConfig"]["requestHeadersToAdd"]
    assert config == _outbound_route_config("http")


def test_no_header_where_no_policy_needs_it() -> None:
    mesh_wide = fault_injection({"kind": "Mesh"})
    for policies in ((), (mesh_wide,)):
        assert "requestHeadersToAdd" not in _outbound_route_config("http", *policies)["routeConfig"]
    # A TCP outbound has no route configuration to carry it.
    named = fault_injection({"kind": "MeshService", "name": "web"})
    tcp = _outbound_route_config("tcp", named)
    assert "statPrefix" in tcp
    assert "routeConfig" not in tcp
