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
from kuma.resources.accesslog_pipe import access_log_socket_name
from kuma.store import Operation, ResourceEvent
from kuma.xds.engine import Engine
from kuma.xds.generate import StaticMeshView, generate_proxy, types
from kuma.xds.proxy_metadata import ProxyMetadata

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
    protocol: str,
    file: dict[str, Any],
    direction: str = "to",
    backends: list[dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The proxy ``backend`` (inbound 17777, outbound other-service on 27777, both
    ``protocol``) with a Mesh-wide MeshAccessLog writing ``file`` in ``direction``."""
    outbound = [{"port": 27777, "tags": {"kuma.io/service": "other-service"}}]
    backend = _dataplane("backend", "backend", 17777, protocol, outbound=outbound)
    other = _dataplane("other", "other-service", 18888, protocol)
    item = {
        "targetRef": {"kind": "Mesh"},
        "default": {"backends": backends or [{"type": "File", "file": file}]},
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


def _generated(proxy: Dataplane, to: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The proxy's resources (type URL -> name -> JSON) under a MeshAccessLog with ``to``."""
    policy = from_document(
        {
            "type": "MeshAccessLog",
            "mesh": "default",
            "name": "logs",
            "spec": {"targetRef": {"kind": "Mesh"}, "to": to},
        }
    )
    assert isinstance(policy, MeshAccessLog)
    assert validate(policy) == []
    matched = resolve(proxy, {"MeshAccessLog": [policy]})
    generated = generate_proxy(proxy, StaticMeshView([proxy]), 9901, policies=matched)
    return {
        type_url: {name: json_format.MessageToDict(m) for name, m in by_name.items()}
        for type_url, by_name in generated.items()
    }


def test_tcp_backend_as_kumas_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kuma's "outbound tcpproxy with tcp backend and default format": a file logger on
    kuma-dp's pipe (Kuma's path for proxy ``backend`` of mesh ``default``) writing
    ``{address, message}``; plus a Json format (message an object) and omitEmptyValues."""
    monkeypatch.delenv("TMPDIR", raising=False)  # Go's os.TempDir: /tmp
    pipe = "/tmp/kuma-al-backend-default.sock"
    default = {"type": "Tcp", "tcp": {"address": "logging.backend"}}
    listeners = _listeners("tcp", {}, backends=[default])
    expected = {
        "name": "envoy.access_loggers.file",
        "typedConfig": {
            "@type": FILE_LOG_TYPE,
            "logFormat": {"jsonFormat": {"address": "logging.backend", "message": TCP_OUTBOUND}},
            "path": pipe,
        },
    }
    assert _access_logs(listeners["outbound:127.0.0.1:27777"]) == [expected]
    fmt = {
        "type": "Json",
        "json": [{"key": "dst", "value": "%KUMA_DESTINATION_SERVICE%"}],
        "omitEmptyValues": True,
    }
    as_json = {"type": "Tcp", "tcp": {"address": "127.0.0.1:5000", "format": fmt}}
    (log,) = _access_logs(_listeners("http", {}, backends=[as_json])["outbound:127.0.0.1:27777"])
    assert log["typedConfig"]["path"] == pipe
    assert log["typedConfig"]["logFormat"] == {
        "jsonFormat": {"address": "127.0.0.1:5000", "message": {"dst": "other-service"}},
        "omitEmptyValues": True,
    }


def test_the_pipe_path_is_cut_as_kumas() -> None:
    assert access_log_socket_name("/tmp", "a" * 200, "m") == "/tmp/kuma-al-" + "a" * 85 + ".sock"


OTEL_TYPE = (
    "type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3."
    "OpenTelemetryAccessLogConfig"
)


def _otel_log(body: dict[str, Any], index: int) -> dict[str, Any]:
    return {
        "name": "envoy.access_loggers.open_telemetry",
        "typedConfig": {
            "@type": OTEL_TYPE,
            "body": body,
            "attributes": {},
            "commonConfig": {
                "grpcService": {
                    "envoyGrpc": {"clusterName": f"meshaccesslog:opentelemetry:{index}"}
                },
                "logName": "MeshAccessLog",
                "transportApiVersion": "V3",
            },
        },
    }


def _collector(index: int, host: str, port: int) -> dict[str, Any]:
    name = f"meshaccesslog:opentelemetry:{index}"
    socket = {"address": host, "portValue": port}
    return {
        "altStatName": name.replace(":", "_"),
        "connectTimeout": "5s",
        "dnsLookupFamily": "V4_ONLY",
        "loadAssignment": {
            "clusterName": name,
            "endpoints": [{"lbEndpoints": [{"endpoint": {"address": {"socketAddress": socket}}}]}],
        },
        "name": name,
        "type": "STRICT_DNS",
        "typedExtensionProtocolOptions": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                "HttpProtocolOptions",
                "explicitHttpConfig": {"http2ProtocolOptions": {}},
            }
        },
    }


def test_opentelemetry_backends_as_kumas_golden() -> None:
    """Kuma's "outbound tcpproxy with opentelemetry backend and plain format": three TCP
    outbounds, two collectors (one without a port: 4317), the default body, a string body and
    a kvlist body with placeholders; one cluster per collector."""
    services = ("other-service", "foo-service", "bar-service")
    outbound = [{"port": 27777 + i, "tags": {"kuma.io/service": s}} for i, s in enumerate(services)]
    proxy = _dataplane("backend", "backend", 17777, "tcp", outbound=outbound)
    kvlist = {"kvlistValue": {"values": [{"key": "mesh", "value": {"stringValue": "%KUMA_MESH%"}}]}}
    otel = [
        {"endpoint": "otel-collector"},
        # Kuma's case gives the raw body %KUMA_MESH%; in YAML that is an AnyValue string.
        {"endpoint": "otel-collector", "body": {"stringValue": "%KUMA_MESH%"}},
        {"endpoint": "other-otel-collector:5317", "body": kvlist},
    ]
    to = [
        {
            "targetRef": {"kind": "MeshService", "name": service},
            "default": {"backends": [{"type": "OpenTelemetry", "openTelemetry": conf}]},
        }
        for service, conf in zip(services, otel, strict=True)
    ]
    generated = _generated(proxy, to)
    listeners = generated[types.LISTENER]
    default_body = TCP_OUTBOUND.rstrip("\n")
    expected = {
        "outbound:127.0.0.1:27777": _otel_log({"stringValue": default_body}, 0),
        "outbound:127.0.0.1:27778": _otel_log({"stringValue": "default"}, 0),
        "outbound:127.0.0.1:27779": _otel_log(
            {"kvlistValue": {"values": [{"key": "mesh", "value": {"stringValue": "default"}}]}},
            1,
        ),
    }
    for name, log in expected.items():
        assert _access_logs(listeners[name]) == [log], name
    clusters = generated[types.CLUSTER]
    assert clusters["meshaccesslog:opentelemetry:0"] == _collector(0, "otel-collector", 4317)
    assert clusters["meshaccesslog:opentelemetry:1"] == _collector(1, "other-otel-collector", 5317)
    assert len([n for n in clusters if n.startswith("meshaccesslog:")]) == 2


def test_a_body_that_is_no_otlp_value_is_its_json_text() -> None:
    """Kuma keeps the body as raw JSON: a plain string is no AnyValue, so the body is the
    JSON text, quotes included, placeholders substituted; attributes go as given."""
    outbound = [{"port": 27777, "tags": {"kuma.io/service": "other-service"}}]
    proxy = _dataplane("backend", "backend", 17777, "http", outbound=outbound)
    otel = {
        "endpoint": "10.1.1.1:4318",
        "body": "mesh %KUMA_MESH%",
        "attributes": [{"key": "k", "value": "%KUMA_MESH%"}],
    }
    to = [
        {
            "targetRef": {"kind": "Mesh"},
            "default": {"backends": [{"type": "OpenTelemetry", "openTelemetry": otel}]},
        }
    ]
    generated = _generated(proxy, to)
    (log,) = _access_logs(generated[types.LISTENER]["outbound:127.0.0.1:27777"])
    assert log["typedConfig"]["body"] == {"stringValue": '"mesh default"'}
    assert log["typedConfig"]["attributes"] == {
        "values": [{"key": "k", "value": {"stringValue": "%KUMA_MESH%"}}]
    }
    cluster = generated[types.CLUSTER]["meshaccesslog:opentelemetry:0"]
    assert cluster["type"] == "STATIC"  # an IP collector needs no DNS
    assert "dnsLookupFamily" not in cluster


def _engine_source_services() -> dict[str, str]:
    """Two proxies of different services (and addresses) reach ``backend`` under one
    Mesh-wide MeshAccessLog: the service each one's outbound log line names as the source."""
    web = xds_dataplane("web-1", "web", address="10.0.0.1", outbounds=("backend",))
    api = xds_dataplane("api-1", "api", address="10.0.0.2", outbounds=("backend",))
    fmt = {"type": "Json", "json": [{"key": "src", "value": "%KUMA_SOURCE_SERVICE%"}]}
    file = {"type": "File", "file": {"path": "/tmp/l", "format": fmt}}
    logs = _outbound_logs_through_the_engine(file, [web, api])
    return {
        name: log["typedConfig"]["logFormat"]["jsonFormat"]["src"] for name, log in logs.items()
    }


def _outbound_logs_through_the_engine(
    backend_log: dict[str, Any],
    proxies: list[Dataplane],
    metadata: dict[str, ProxyMetadata] | None = None,
) -> dict[str, Any]:
    """The access log of each proxy's outbound to ``backend`` (listener from the engine, the
    proxy subscribed with its ``metadata``) under a Mesh-wide MeshAccessLog ``backend_log``."""
    backend = xds_dataplane("b-1", "backend", address="10.0.0.9")
    item = {"targetRef": {"kind": "Mesh"}, "default": {"backends": [backend_log]}}
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
        [ResourceEvent(Operation.CREATE, r, META, 1) for r in (backend, *proxies, policy)]
    )
    found = {}
    for proxy in proxies:
        watch = engine.subscribe(f"default.{proxy.name}", (metadata or {}).get(proxy.name))
        body = watch.resources(types.LISTENER)["outbound:127.0.0.1:20000"].body
        listener = json_format.MessageToDict(listener_pb2.Listener.FromString(body))
        (found[proxy.name],) = _access_logs(listener)
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


def test_each_proxy_logs_to_its_own_pipe_from_its_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two proxies of one service at one address reach ``backend`` under a Tcp backend: each
    outbound logger writes to its own kuma-dp's pipe, the one its node metadata names
    (``accessLogSocketPath``), else Kuma's fallback path, so the shared listener is not
    shared between them."""
    monkeypatch.setenv("TMPDIR", "/var/tmp")
    web1 = xds_dataplane("web-1", "web", address="10.0.0.1", outbounds=("backend",))
    web2 = xds_dataplane("web-2", "web", address="10.0.0.1", outbounds=("backend",))
    tcp = {"type": "Tcp", "tcp": {"address": "10.0.0.5:5000"}}
    metadata = {"web-1": ProxyMetadata(access_log_socket="/run/dp1/kuma-al-web-1-default.sock")}
    logs = _outbound_logs_through_the_engine(tcp, [web1, web2], metadata)
    paths = {name: log["typedConfig"]["path"] for name, log in logs.items()}
    assert paths == {
        "web-1": "/run/dp1/kuma-al-web-1-default.sock",
        "web-2": "/var/tmp/kuma-al-web-2-default.sock",
    }
