"""MeshAccessLog's OpenTelemetry backend, as Kuma's plugin (plugin/xds/configurer.go
``otelAccessLog``, clusters.go ``HandleClusters``): an ``envoy.access_loggers.open_telemetry``
access log sending to a per-proxy cluster ``meshaccesslog:opentelemetry:<n>`` (one per distinct
collector endpoint, gRPC over HTTP/2, port 4317 when the endpoint names none).

The body: Kuma's default format (without the trailing newline) or the backend's ``body``. Kuma
keeps the body as raw JSON and reads it as an OTLP ``AnyValue`` (``{"stringValue": ...}``,
``{"kvlistValue": ...}``, ...), substituting the placeholders in its strings and kvlist keys;
raw JSON that is no ``AnyValue`` (a plain YAML string, say) becomes a string body of that
JSON text, quotes included. Attributes go as given (no substitution, as in Kuma).

Numbering: Kuma numbers the collectors in the order its plugin meets them while visiting the
proxy's listeners; here they are numbered in sorted order of ``host:port`` over every conf the
proxy's rules hold, which is the same for one collector and stable for many.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.access_loggers.open_telemetry.v3 import logs_service_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as upstream_http_pb2
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

# OTLP's protos come with xds-protos (a dependency), without type stubs.
from opentelemetry.proto.common.v1 import common_pb2  # type: ignore[import-untyped, unused-ignore]

from kuma.resources.validation.common import is_ip

OTEL_LOGGER = "envoy.access_loggers.open_telemetry"
DEFAULT_PORT = 4317
_CONNECT_TIMEOUT = 5  # Kuma's DefaultTimeout for a TCP cluster
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

Endpoint = tuple[str, int]


def endpoint_of(text: str) -> Endpoint:
    """Kuma's ``endpointForOtel``: ``host[:port]``, port 4317 when absent."""
    host, _, port = text.partition(":")
    if not port:
        return host, DEFAULT_PORT
    digits = port.split(":")[0]
    return host, int(digits) if digits.isdigit() else 0


def cluster_name(index: int) -> str:
    return f"meshaccesslog:opentelemetry:{index}"


def numbering(endpoints: Iterable[Endpoint]) -> dict[Endpoint, int]:
    return {endpoint: i for i, endpoint in enumerate(sorted(set(endpoints)))}


def collector_cluster(endpoint: Endpoint, index: int, ipv6: bool) -> cluster_pb2.Cluster:
    """Kuma's cluster for a collector: STATIC for an IP, else STRICT_DNS (V4_ONLY unless the
    proxy has an IPv6 address), 5 s connect timeout, HTTP/2."""
    name = cluster_name(index)
    cluster = cluster_pb2.Cluster(name=name, alt_stat_name=name.replace(":", "_"))
    host, port = endpoint
    if is_ip(host):
        cluster.type = cluster_pb2.Cluster.STATIC
    else:
        cluster.type = cluster_pb2.Cluster.STRICT_DNS
        family = cluster_pb2.Cluster.AUTO if ipv6 else cluster_pb2.Cluster.V4_ONLY
        cluster.dns_lookup_family = family
    cluster.connect_timeout.seconds = _CONNECT_TIMEOUT
    assignment = cluster.load_assignment
    assignment.cluster_name = name
    socket = assignment.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
    socket.address, socket.port_value = host, port
    options = upstream_http_pb2.HttpProtocolOptions()
    options.explicit_http_config.http2_protocol_options.SetInParent()
    cluster.typed_extension_protocol_options[_HTTP_OPTIONS].Pack(options)
    return cluster


def _body(body: Any, default: str, interpolate: Callable[[str], str]) -> common_pb2.AnyValue:
    if body is None:
        return common_pb2.AnyValue(string_value=interpolate(default))
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    value = common_pb2.AnyValue()
    try:
        json_format.Parse(raw, value)
    except json_format.ParseError:
        return common_pb2.AnyValue(string_value=interpolate(raw))
    _interpolate_any(value, interpolate)
    return value


def _interpolate_any(value: common_pb2.AnyValue, interpolate: Callable[[str], str]) -> None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        value.string_value = interpolate(value.string_value)
    elif kind == "array_value":
        for item in value.array_value.values:
            _interpolate_any(item, interpolate)
    elif kind == "kvlist_value":
        for pair in value.kvlist_value.values:
            _interpolate_any(pair.value, interpolate)
            pair.key = interpolate(pair.key)


def otel_access_log(
    endpoint: str,
    body: Any,
    attributes: Iterable[tuple[str, str]],
    default_format: str,
    interpolate: Callable[[str], str],
    clusters: Mapping[Endpoint, int],
) -> accesslog_pb2.AccessLog:
    config = logs_service_pb2.OpenTelemetryAccessLogConfig()
    common = config.common_config
    common.log_name = "MeshAccessLog"
    common.transport_api_version = config_source_pb2.V3
    index = clusters[endpoint_of(endpoint)]
    common.grpc_service.envoy_grpc.cluster_name = cluster_name(index)
    config.body.CopyFrom(_body(body, default_format, interpolate))
    config.attributes.SetInParent()
    for key, value in attributes:
        pair = config.attributes.values.add()
        pair.key, pair.value.string_value = key, value
    access_log = accesslog_pb2.AccessLog(name=OTEL_LOGGER)
    access_log.typed_config.Pack(config)
    return access_log
