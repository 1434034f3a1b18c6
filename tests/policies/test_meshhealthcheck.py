"""MeshHealthCheck's Envoy change on a service cluster, by the service's protocol."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.policies import resolve
from kuma.policies.meshhealthcheck import MeshHealthCheck
from kuma.resources import Dataplane, from_document, validate
from kuma.xds.generate import StaticMeshView, generate_proxy, types

BACKEND = "backend"


def _dataplane(name: str, service: str, protocol: str, outbound: str | None = None) -> Dataplane:
    networking: dict[str, Any] = {
        "address": "10.0.0.1",
        "inbound": [
            {"port": 10000, "tags": {"kuma.io/service": service, "kuma.io/protocol": protocol}}
        ],
    }
    if outbound:
        networking["outbound"] = [{"port": 20000, "tags": {"kuma.io/service": outbound}}]
    resource = from_document(
        {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}
    )
    assert isinstance(resource, Dataplane)
    return resource


def _policy(default: dict[str, Any]) -> MeshHealthCheck:
    policy = from_document(
        {
            "type": "MeshHealthCheck",
            "mesh": "default",
            "name": "hc",
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [
                    {"targetRef": {"kind": "MeshService", "name": "backend"}, "default": default}
                ],
            },
        }
    )
    assert isinstance(policy, MeshHealthCheck)
    assert validate(policy) == []
    return policy


def _checks(protocol: str, default: dict[str, Any]) -> list[Any]:
    web = _dataplane("web-1", "web", "http", outbound="backend")
    backend = _dataplane("backend-1", "backend", protocol)
    matched = resolve(web, {"MeshHealthCheck": [_policy(default)]})
    view = StaticMeshView([web, backend])
    cluster = generate_proxy(web, view, 9901, policies=matched)[types.CLUSTER]["backend"]
    plain = json.loads(json_format.MessageToJson(cluster))
    return list(plain.get("healthChecks", []))


def test_http_service_gets_an_http_check_with_kuma_defaults() -> None:
    checks = _checks("http", {"http": {"path": "/health", "expectedStatuses": [200]}})
    assert checks == [
        {
            "interval": "60s",
            "timeout": "15s",
            "unhealthyThreshold": 5,
            "healthyThreshold": 1,
            "httpHealthCheck": {
                "path": "/health",
                "expectedStatuses": [{"start": "200", "end": "201"}],
            },
        }
    ]


def test_tcp_service_and_fallbacks() -> None:
    tcp = {"interval": "2s", "tcp": {"send": "ping", "receive": ["pong"]}}
    checks = _checks("tcp", tcp)
    assert checks[0]["interval"] == "2s"
    assert checks[0]["tcpHealthCheck"] == {
        "send": {"text": "70696e67"},
        "receive": [{"text": "706f6e67"}],
    }
    # An HTTP service with HTTP disabled falls back to TCP; without TCP there is no check.
    fallback = _checks("http", {"http": {"disabled": True}, "tcp": {}})
    assert fallback[0]["tcpHealthCheck"] == {}
    assert _checks("http", {"http": {"disabled": True}}) == []
    # A gRPC service gets a gRPC check; an http2 one an HTTP/2 codec.
    assert "grpcHealthCheck" in _checks("grpc", {"grpc": {}})[0]
    assert _checks("http2", {"http": {}})[0]["httpHealthCheck"]["codecClientType"] == "HTTP2"
