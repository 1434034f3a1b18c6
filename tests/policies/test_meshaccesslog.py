"""MeshAccessLog's Envoy change, compared with the expected listeners of Kuma's plugin test
(pkg/plugins/policies/meshaccesslog/plugin/v1alpha1/plugin_test.go: "basic outbound route",
"outbound tcpproxy with file backend and default|plain|json format", "basic inbound route"):
the same access log, format text (placeholders substituted) and path for the same input.
The expected strings are Kuma's, written out (not built from this project's constants)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.policies import resolve
from kuma.policies.meshaccesslog import MeshAccessLog, MeshAccessLogPlugin
from kuma.resources import Dataplane, ResourceMeta, from_document, validate
from kuma.store import Operation, ResourceEvent
from kuma.xds.engine import Engine
from kuma.xds.generate import StaticMeshView, generate_proxy, types

from ..xds.test_engine import dataplane as xds_dataplane

META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
FILE_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
#: Kuma's expected format strings (mesh ``default``, proxy ``backend`` at 127.0.0.1).
HTTP_OUTBOUND = (
    '[%START_TIME%] default "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"'
    " %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%"
    ' %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"'
    ' "%REQ(X-B3-TRACEID?X-DATADOG-TRACEID)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%"'
    ' "backend" "other-service" "127.0.0.1" "%UPSTREAM_HOST%"\n'
)
HTTP_INBOUND = HTTP_OUTBOUND.replace('"backend" "other-service"', '"unknown" "backend"')
TCP_OUTBOUND = (
    "[%START_TIME%] %RESPONSE_FLAGS% default 127.0.0.1(backend)->%UPSTREAM_HOST%(other-service)"
    " took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes\n"
)


def _dataplane(name: str, service: str, port: int, protocol: str, **extra: Any) -> Dataplane:
    tags = {"kuma.io/service": service, "kuma.io/protocol": protocol}
    networking = {
        "address": "127.0.0.1",
        "inbound": [{"port": port, "servicePort": port + 1000, "tags": tags}],
        **extra,
    }
    resource = from_document(
        {"type": "Dataplane", "mesh": "default", "name": name, "networking": networking}
    )
    assert isinstance(resource, Dataplane)
    return resource


def _listeners(
    protocol: str, file: dict[str, Any], direction: str = "to"
) -> dict[str, dict[str, Any]]:
    """The proxy ``backend`` (inbound 17777, outbound other-service on 27777, both
    ``protocol``) with a Mesh-wide MeshAccessLog writing ``file`` in ``direction``."""
    outbound = [{"port": 27777, "tags": {"kuma.io/service": "other-service"}}]
    backend = _dataplane("backend", "backend", 17777, protocol, outbound=outbound)
    other = _dataplane("other", "other-service", 18888, protocol)
    item = {
        "targetRef": {"kind": "Mesh"},
        "default": {"backends": [{"type": "File", "file": file}]},
    }
    policy = from_document(
        {
            "type": "MeshAccessLog",
            "mesh": "default",
            "name": "logs",
            "spec": {"targetRef": {"kind": "Mesh"}, direction: [item]},
        }
    )
    assert isinstance(policy, MeshAccessLog)
    assert validate(policy) == []
    matched = resolve(backend, {"MeshAccessLog": [policy]})
    view = StaticMeshView([backend, other])
    generated = generate_proxy(backend, view, 9901, policies=matched)
    return {
        name: json.loads(json_format.MessageToJson(listener))
        for name, listener in generated[types.LISTENER].items()
    }


def _access_logs(listener: dict[str, Any]) -> list[Any]:
    (chain,) = listener["filterChains"]
    return [log for f in chain["filters"] for log in f["typedConfig"].get("accessLog", [])]


def _file_log(log_format: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "envoy.access_loggers.file",
        "typedConfig": {"@type": FILE_LOG_TYPE, "logFormat": log_format, "path": "/tmp/log"},
    }


def test_http_outbound_default_format() -> None:
    listeners = _listeners("http", {"path": "/tmp/log"})
    outbound = listeners["outbound:127.0.0.1:27777"]
    (manager,) = outbound["filterChains"][0]["filters"]
    assert manager["name"] == "envoy.filters.network.http_connection_manager"
    expected = _file_log({"textFormatSource": {"inlineString": HTTP_OUTBOUND}})
    assert _access_logs(outbound) == [expected]
    # A ``to`` policy leaves the inbound alone.
    assert _access_logs(listeners["inbound:127.0.0.1:17777"]) == []


def test_tcp_outbound_default_plain_and_json_formats() -> None:
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"path": "/tmp/log"}, {"textFormatSource": {"inlineString": TCP_OUTBOUND}}),
        (
            {
                "path": "/tmp/log",
                "format": {
                    "type": "Plain",
                    "plain": "custom format [%START_TIME%] %RESPONSE_FLAGS%",
                },
            },
            {
                "textFormatSource": {
                    "inlineString": "custom format [%START_TIME%] %RESPONSE_FLAGS%\n"
                }
            },
        ),
        (
            {
                "path": "/tmp/log",
                "format": {
                    "type": "Json",
                    "json": [
                        {"key": "protocol", "value": "%PROTOCOL%"},
                        {"key": "duration", "value": "%DURATION%"},
                    ],
                },
            },
            {"jsonFormat": {"duration": "%DURATION%", "protocol": "%PROTOCOL%"}},
        ),
    ]
    for file, log_format in cases:
        outbound = _listeners("tcp", file)["outbound:127.0.0.1:27777"]
        (proxy,) = outbound["filterChains"][0]["filters"]
        assert proxy["name"] == "envoy.filters.network.tcp_proxy"
        assert _access_logs(outbound) == [_file_log(log_format)], file


def test_http_inbound_default_format_and_placeholders() -> None:
    listeners = _listeners("http", {"path": "/tmp/log"}, direction="from")
    assert _access_logs(listeners["inbound:127.0.0.1:17777"]) == [
        _file_log({"textFormatSource": {"inlineString": HTTP_INBOUND}})
    ]
    assert _access_logs(listeners["outbound:127.0.0.1:27777"]) == []
    # Every placeholder Kuma substitutes, and omitEmptyValues carried over (JSON format).
    fields = [
        "%KUMA_MESH%",
        "%KUMA_SOURCE_SERVICE%",
        "%KUMA_DESTINATION_SERVICE%",
        "%KUMA_SOURCE_ADDRESS%",
        "%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%",
        "%KUMA_TRAFFIC_DIRECTION%",
    ]
    json_fmt = {
        "type": "Json",
        "json": [{"key": f"k{i}", "value": v} for i, v in enumerate(fields)],
        "omitEmptyValues": True,
    }
    inbound = _listeners("tcp", {"path": "/tmp/log", "format": json_fmt}, direction="from")
    (log,) = _access_logs(inbound["inbound:127.0.0.1:17777"])
    assert log["typedConfig"]["logFormat"] == {
        "jsonFormat": {
            "k0": "default",
            "k1": "unknown",
            "k2": "backend",
            "k3": "127.0.0.1:0",
            "k4": "127.0.0.1",
            "k5": "INBOUND",
        },
        "omitEmptyValues": True,
    }


def test_tcp_and_opentelemetry_backends_are_not_generated() -> None:
    """Kuma streams Tcp backends through kuma-dp's access-log socket and OpenTelemetry ones
    through a cluster of their own; neither is generated here (documented)."""
    outbound = [{"port": 27777, "tags": {"kuma.io/service": "other-service"}}]
    backend = _dataplane("backend", "backend", 17777, "http", outbound=outbound)
    backends = [
        {"type": "Tcp", "tcp": {"address": "127.0.0.1:5000"}},
        {"type": "OpenTelemetry", "openTelemetry": {"endpoint": "otel:4317"}},
    ]
    policy = from_document(
        {
            "type": "MeshAccessLog",
            "mesh": "default",
            "name": "logs",
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {"backends": backends}}],
            },
        }
    )
    assert isinstance(policy, MeshAccessLog)
    assert validate(policy) == []
    matched = resolve(backend, {"MeshAccessLog": [policy]})
    generated = generate_proxy(backend, StaticMeshView([backend]), 9901, policies=matched)
    assert "accessLog" not in json.dumps(
        [json_format.MessageToDict(m) for m in generated[types.LISTENER].values()]
    )


def _engine_source_services() -> dict[str, str]:
    """Two proxies of different services (and addresses) reach ``backend`` under one
    Mesh-wide MeshAccessLog: the service each one's outbound log line names as the source."""
    backend = xds_dataplane("b-1", "backend", address="10.0.0.9")
    web = xds_dataplane("web-1", "web", address="10.0.0.1", outbounds=("backend",))
    api = xds_dataplane("api-1", "api", address="10.0.0.2", outbounds=("backend",))
    fmt = {"type": "Json", "json": [{"key": "src", "value": "%KUMA_SOURCE_SERVICE%"}]}
    item = {
        "targetRef": {"kind": "Mesh"},
        "default": {"backends": [{"type": "File", "file": {"path": "/tmp/l", "format": fmt}}]},
    }
    policy = from_document(
        {
            "type": "MeshAccessLog",
            "mesh": "default",
            "name": "logs",
            "spec": {"targetRef": {"kind": "Mesh"}, "to": [item]},
        }
    )
    engine = Engine()
    engine.apply_now(
        [ResourceEvent(Operation.CREATE, r, META, 1) for r in (backend, web, api, policy)]
    )
    found = {}
    for name in ("web-1", "api-1"):
        watch = engine.subscribe(f"default.{name}")
        body = watch.resources(types.LISTENER)["outbound:127.0.0.1:20000"].body
        listener = json_format.MessageToDict(listener_pb2.Listener.FromString(body))
        (log,) = _access_logs(listener)
        found[name] = log["typedConfig"]["logFormat"]["jsonFormat"]["src"]
    return found


def test_shared_outbound_listeners_keep_each_proxys_identity() -> None:
    assert _engine_source_services() == {"web-1": "web", "api-1": "api"}


def test_a_listener_key_without_the_identity_would_mix_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check of the check: without the proxy's identity in the listener key, both
    proxies get the listener built first, so the test above would fail on such a key."""
    full = MeshAccessLogPlugin.outbound_listener_input

    def without_identity(self: Any, policies: Any, rule: Any) -> Any:
        found = full(self, policies, rule)
        return found if found is None else found[:1]

    monkeypatch.setattr(MeshAccessLogPlugin, "outbound_listener_input", without_identity)
    assert len(set(_engine_source_services().values())) == 1


def test_transparent_passthrough_logs_to_external_for_mesh_wide_rules_only() -> None:
    """Kuma computes the passthrough listener's conf for service ``pass_through`` and names
    the destination ``external``: a ``to: Mesh`` rule logs there, a MeshService one does not."""
    tp = {"redirectPortInbound": 15006, "redirectPortOutbound": 15001}
    proxy = _dataplane("backend", "backend", 17777, "http", transparentProxying=tp)

    def passthrough_logs(to: dict[str, Any]) -> list[Any]:
        file = {"type": "File", "file": {"path": "/tmp/log"}}
        item = {"targetRef": to, "default": {"backends": [file]}}
        policy = from_document(
            {
                "type": "MeshAccessLog",
                "mesh": "default",
                "name": "logs",
                "spec": {"targetRef": {"kind": "Mesh"}, "to": [item]},
            }
        )
        assert isinstance(policy, MeshAccessLog)
        matched = resolve(proxy, {"MeshAccessLog": [policy]})
        generated = generate_proxy(proxy, StaticMeshView([proxy]), 9901, policies=matched)
        listener = generated[types.LISTENER]["outbound:passthrough:ipv4"]
        return _access_logs(json_format.MessageToDict(listener))

    expected = TCP_OUTBOUND.replace("(other-service)", "(external)")
    assert passthrough_logs({"kind": "Mesh"}) == [
        _file_log({"textFormatSource": {"inlineString": expected}})
    ]
    assert passthrough_logs({"kind": "MeshService", "name": "other-service"}) == []
