"""What a proxy tells the control plane about itself in its node metadata (beyond its
identity), read once when its stream opens (Kuma's ``pkg/core/xds/metadata.go``)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from kuma.resources.accesslog_pipe import ACCESS_LOG_SOCKET_KEY
from kuma.resources.metrics import METRICS_CERT_KEY, METRICS_KEY_KEY, METRICS_SOCKET_KEY
from kuma.xds.generate.prometheus import SidecarMetrics

log = logging.getLogger("kuma.xds")

#: kuma-dp's DNS port (Kuma's ``FieldDataplaneDNSPort``).
DNS_PORT_KEY = "dataplane.dns.port"
#: kuma-dp's readiness reporter port (Kuma's ``FieldDataplaneReadinessPort``).
READINESS_PORT_KEY = "dataplane.readinessReporter.port"


class ProxyMetadata(msgspec.Struct, frozen=True):
    #: The port of the proxy's DNS listener (``kuma:dns``), 0: kuma-dp serves no DNS.
    dns_port: int = 0
    #: The port of kuma-dp's readiness reporter on 127.0.0.1 (``kuma:readiness``), 0: none.
    readiness_port: int = 0
    #: What kuma-dp reports for the Prometheus endpoint (hijacker socket, certificate files).
    metrics: SidecarMetrics = msgspec.field(default_factory=SidecarMetrics)
    #: kuma-dp's access-log pipe (MeshAccessLog's Tcp backend); "": Kuma's fallback path.
    access_log_socket: str = ""


NO_METADATA = ProxyMetadata()
_METRICS_KEYS = (METRICS_SOCKET_KEY, METRICS_CERT_KEY, METRICS_KEY_KEY)


def proxy_metadata(node: Any) -> ProxyMetadata:
    """The metadata of an Envoy ``Node``; a value that is not a port is ignored (logged)."""
    if node is None or not node.HasField("metadata"):
        return NO_METADATA
    fields = node.metadata.fields
    keys = (DNS_PORT_KEY, READINESS_PORT_KEY, ACCESS_LOG_SOCKET_KEY, *_METRICS_KEYS)
    if not any(key in fields for key in keys):
        return NO_METADATA
    metadata = ProxyMetadata(
        dns_port=_port(node, DNS_PORT_KEY, "no DNS listener"),
        readiness_port=_port(node, READINESS_PORT_KEY, "readiness from Envoy"),
        metrics=SidecarMetrics(*(_string(node, key) for key in _METRICS_KEYS)),
        access_log_socket=_string(node, ACCESS_LOG_SOCKET_KEY),
    )
    return NO_METADATA if metadata == NO_METADATA else metadata


def _port(node: Any, key: str, otherwise: str) -> int:
    """The port under ``key`` (a string, as kuma-dp writes it, or a number); 0 when absent or
    not a port (logged, with what happens ``otherwise``)."""
    fields = node.metadata.fields
    if key not in fields:
        return 0
    value = fields[key]
    kind = value.WhichOneof("kind")
    port = -1
    if kind == "string_value" and value.string_value.isdigit():
        port = int(value.string_value)
    elif kind == "number_value" and float(value.number_value).is_integer():
        port = int(value.number_value)
    if not 0 < port < 65536:
        shown = getattr(value, kind) if kind else None
        log.warning("node %s: %s=%r is not a port; %s", node.id, key, shown, otherwise)
        return 0
    return port


def _string(node: Any, key: str) -> str:
    """The string under ``key`` (Kuma's GetStringValue: anything else is "")."""
    value = node.metadata.fields.get(key)
    return value.string_value if value is not None else ""
