"""ExternalService rules (Kuma: external_service_validator.go, system.ValidateDataSource).

Kuma's order and messages: the networking section (address, then the TLS serverName and the
three DataSources), then the tags (an unknown ``kuma.io/protocol`` first, then every key and
value, then the mandatory ``kuma.io/service``), then a service named like the address's host.
"""

from __future__ import annotations

from ..errors import Violation
from ..model import PROTOCOL_TAG, SERVICE_TAG, DataSource, ExternalService
from .common import (
    MISSING_SERVICE_TAG,
    PORT_RANGE,
    check_mesh_name,
    check_name,
    check_tag_entries,
    go_quote,
    is_dns_name,
    is_ip,
    tag_field,
)
from .dataplane import SUPPORTED_PROTOCOLS


def split_host_port(address: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``: ``host:port`` or ``[v6]:port``; None when it fails."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0 or address[end + 1 : end + 2] != ":" or "]" in address[end + 1 :]:
            return None
        host, port = address[1:end], address[end + 2 :]
        return None if "[" in host else (host, port)
    if address.count(":") != 1:  # none, or an IPv6 address without brackets
        return None
    host, port = address.split(":")
    return None if "[" in host or "]" in host else (host, port)


def _parse_port(text: str) -> int | None:
    # strconv.ParseUint(port, 10, 32): decimal digits only, below 2**32.
    if not text.isascii() or not text.isdigit() or int(text) >= 1 << 32:
        return None
    return int(text)


def check_data_source(out: list[Violation], path: str, source: DataSource | None) -> None:
    if source is None:
        return
    if not (source.inline or source.inline_string or source.secret or source.file):
        out.append(Violation(path, "data source cannot be empty"))
    chosen = [v for v in (source.secret, source.file, source.inline, source.inline_string) if v]
    if len(chosen) > 1:
        # Kuma's DataSource is a protobuf oneof: its decoder refuses a second choice.
        out.append(Violation(path, "only one of secret, file, inline, inlineString can be set"))


def _check_address(out: list[Violation], address: str) -> None:
    path = "networking.address"
    if not address:
        out.append(Violation(path, "address can't be empty"))
        return
    parts = split_host_port(address)
    if parts is None:
        out.append(Violation(path, "unable to parse address"))
    host, port_text = parts if parts is not None else ("", "")
    if not is_ip(host) and not is_dns_name(host):
        out.append(Violation(path, "address has to be a valid IP address or a domain name"))
    port = _parse_port(port_text)
    if port is None:
        out.append(Violation(path, "unable to parse port in address"))
    if not port or port > 65535:
        out.append(Violation(path, PORT_RANGE))


def validate_external_service(service: ExternalService, out: list[Violation]) -> None:
    # Kuma checks the name and mesh apart (its resource meta validator); same messages here.
    check_name(out, "name", service.name)
    check_mesh_name(out, service.mesh)
    networking = service.networking
    if networking is None:
        out.append(Violation("networking", "should have networking"))
    else:
        _check_address(out, networking.address)
        tls = networking.tls
        if tls is not None:
            if tls.server_name is not None and not tls.server_name:
                out.append(Violation("networking.tls.serverName", "cannot be empty"))
            check_data_source(out, "networking.tls.caCert", tls.ca_cert)
            check_data_source(out, "networking.tls.clientCert", tls.client_cert)
            check_data_source(out, "networking.tls.clientKey", tls.client_key)

    tags = service.tags
    protocol = tags.get(PROTOCOL_TAG)
    if protocol is not None and protocol.lower() not in SUPPORTED_PROTOCOLS:
        out.append(
            Violation(
                tag_field("tags", PROTOCOL_TAG),
                f"tag {go_quote(PROTOCOL_TAG)} has an invalid value {go_quote(protocol)}. "
                f"Allowed values: {', '.join(SUPPORTED_PROTOCOLS)}",
            )
        )
    check_tag_entries(out, "tags", tags)
    if SERVICE_TAG not in tags:
        out.append(Violation("tags", MISSING_SERVICE_TAG))
    name = service.service
    if name and networking is not None:
        parts = split_host_port(networking.address)
        if parts is not None and parts[0] == name:
            clash = "cannot be the same as networking.address"
            out.append(Violation(tag_field("tags", SERVICE_TAG), clash))
