"""Dataplane rules (Kuma: pkg/core/resources/apis/mesh/dataplane_validator.go).

Violations come out in Kuma's order: name and mesh, the admin port, the proxy kind (standard,
delegated or builtin gateway), then networking, inbounds, outbounds and probes. Rules Kuma does
not have are marked "Not in Kuma" and come after Kuma's own in each section; listener clashes
are reported last.
"""

from __future__ import annotations

import re

from ..errors import Violation
from ..model import (
    DEFAULT_OUTBOUND_ADDRESS,
    PROTOCOL_TAG,
    SERVICE_TAG,
    Admin,
    Dataplane,
    Gateway,
    Inbound,
    Networking,
    Outbound,
    Probes,
    ServiceProbe,
    TransparentProxying,
)
from .common import (
    MAX_PORT,
    PORT_RANGE,
    check_address,
    check_mesh_name,
    check_name,
    check_optional_port,
    check_port,
    check_positive,
    check_positive_duration,
    check_service_tags,
    check_tag_entries,
    go_quote,
    is_ip,
    overlaps_loopback,
    tag_field,
    tags_known_valid,
)
from .mesh_sections import check_dataplane_metrics

# Kuma's SupportedProtocols, in the order its message lists them.
SUPPORTED_PROTOCOLS = ("grpc", "http", "http2", "kafka", "tcp")
_SUPPORTED_PROTOCOLS = frozenset(SUPPORTED_PROTOCOLS)
_ALLOWED_PROTOCOLS_HINT = "Allowed values: " + ", ".join(SUPPORTED_PROTOCOLS)
# The proto enum of transparentProxying.ipFamilyMode; protojson accepts exactly these names.
IP_FAMILY_MODES = ("UnSpecified", "DualStack", "IPv4", "IPv6")

# Kuma uses Go's url.ParseRequestURI: an absolute path without control characters whose
# percent escapes are well formed. (Go would also take a full URL with a scheme; a probe path
# that is a URL would make no sense, so it is refused here.)
_URL_PATH = re.compile(r"/(?:[^%\x00-\x1f\x7f]|%[0-9A-Fa-f]{2})*")


def validate_dataplane(dataplane: Dataplane, out: list[Violation]) -> None:
    check_name(out, "name", dataplane.name)
    check_mesh_name(out, dataplane.mesh)
    networking = dataplane.networking
    if networking is None:
        out.append(Violation("networking", "must be defined"))
        return
    if networking.admin is not None:
        _check_admin(out, networking, networking.admin)

    gateway = networking.gateway
    if gateway is None:
        if not networking.inbound:
            out.append(
                Violation("networking", "has to contain at least one inbound interface or gateway")
            )
        _check_networking(out, networking)
        _check_probes(out, dataplane.probes)
        check_dataplane_metrics(out, dataplane.metrics)
    elif gateway.type == "DELEGATED":
        if networking.inbound:
            out.append(
                Violation("networking.inbound", "inbound cannot be defined for delegated gateways")
            )
        _check_gateway(out, gateway)
        _check_networking(out, networking)
        _check_probes(out, dataplane.probes)
    else:  # BUILTIN: Envoy's listeners come from MeshGateway; the Dataplane only names it.
        if networking.inbound:
            out.append(
                Violation("networking.inbound", "inbound cannot be defined for builtin gateways")
            )
        if networking.outbound:
            out.append(
                Violation("networking.outbound", "outbound cannot be defined for builtin gateways")
            )
        if dataplane.probes is not None:
            # Kuma's path, though the field is the top-level "probes".
            out.append(
                Violation("networking.probes", "probes cannot be defined for builtin gateways")
            )
        _check_gateway(out, gateway)
        _check_networking(out, networking)

    _check_listener_clashes(out, networking)


def _check_admin(out: list[Violation], networking: Networking, admin: Admin) -> None:
    """Envoy's admin listens on 127.0.0.1:<admin.port>; nothing else may take that socket.

    As in Kuma, an inbound clashes when its listener (address:port) or its application
    (serviceAddress:servicePort) is on 127.0.0.1 or a wildcard address with that port; a
    listener on another interface with the same port is fine. Port 0 means the CP's default.
    """
    port = admin.port
    if port == 0:
        return
    if not 1 <= port <= MAX_PORT:
        out.append(Violation("networking.admin.port", PORT_RANGE))
        return
    for inbound in networking.inbound:
        if (inbound.port == port and overlaps_loopback(inbound.effective_address(networking))) or (
            inbound.effective_service_port == port
            and overlaps_loopback(inbound.effective_service_address(networking))
        ):
            out.append(Violation("networking.admin.port", "must differ from inbound"))
            break
    for outbound in networking.outbound:
        if outbound.port == port and overlaps_loopback(outbound.effective_address):
            out.append(Violation("networking.admin.port", "must differ from outbound"))
            break


def _check_networking(out: list[Violation], networking: Networking) -> None:
    check_address(out, "networking.address", networking.address)
    for index, inbound in enumerate(networking.inbound):
        _check_inbound(out, f"networking.inbound[{index}]", inbound, networking)
    for index, outbound in enumerate(networking.outbound):
        _check_outbound(out, index, outbound)
    # Not in Kuma: advertisedAddress becomes the endpoint address other proxies dial (EDS);
    # a malformed one would make Envoy reject the whole ClusterLoadAssignment of the service.
    if networking.advertised_address:
        check_address(out, "networking.advertisedAddress", networking.advertised_address)
    if networking.transparent_proxying is not None:
        _check_transparent_proxying(out, networking.transparent_proxying)


def _check_inbound(
    out: list[Violation], path: str, inbound: Inbound, networking: Networking
) -> None:
    # Field paths are built only when a rule is broken: this runs for every inbound on load.
    port = inbound.port
    if not 1 <= port <= MAX_PORT:
        out.append(Violation(f"{path}.port", PORT_RANGE))
    service_port = inbound.service_port
    # Kuma cannot tell an explicit 0 from "unset" (proto3); here an explicit 0 is a value, and a
    # wrong one: the application would be dialled on port 0.
    if service_port is not None and not 1 <= service_port <= MAX_PORT:
        out.append(Violation(f"{path}.servicePort", PORT_RANGE))
    service_address = inbound.service_address
    if service_address:
        if not is_ip(service_address):
            out.append(
                Violation(f"{path}.serviceAddress", "serviceAddress has to be valid IP address")
            )
        # Kuma compares serviceAddress with networking.address and, separately, with the
        # inbound's own address (reporting twice when all three are equal). What matters is the
        # socket Envoy listens on: the inbound's effective address.
        if service_address == (inbound.address or networking.address) and (
            not service_port or service_port == port
        ):
            out.append(
                Violation(
                    f"{path}.serviceAddress",
                    "serviceAddress and servicePort has to differ from address and port",
                )
            )
    if inbound.address and not is_ip(inbound.address):
        out.append(Violation(f"{path}.address", "address has to be valid IP address"))

    tags = inbound.tags
    protocol = tags.get(PROTOCOL_TAG)
    if protocol is not None and protocol.lower() not in _SUPPORTED_PROTOCOLS:
        out.append(
            Violation(
                tag_field(f"{path}.tags", PROTOCOL_TAG),
                f"tag {go_quote(PROTOCOL_TAG)} has an invalid value {go_quote(protocol)}. "
                f"{_ALLOWED_PROTOCOLS_HINT}",
            )
        )
    if not tags_known_valid(tags):
        check_tag_entries(out, f"{path}.tags", tags)
    if inbound.service_probe is not None:
        _check_service_probe(out, f"{path}.serviceProbe", inbound.service_probe)
    if SERVICE_TAG not in tags:
        out.append(Violation(tag_field(f"{path}.tags", SERVICE_TAG), "tag has to exist"))


def _check_service_probe(out: list[Violation], path: str, probe: ServiceProbe) -> None:
    if probe.interval is not None:
        check_positive_duration(out, f"{path}.interval", probe.interval)
    if probe.timeout is not None:
        check_positive_duration(out, f"{path}.timeout", probe.timeout)
    if probe.unhealthy_threshold is not None:
        check_positive(out, f"{path}.unhealthyThreshold", probe.unhealthy_threshold)
    if probe.healthy_threshold is not None:
        check_positive(out, f"{path}.healthyThreshold", probe.healthy_threshold)


def _check_outbound(out: list[Violation], index: int, outbound: Outbound) -> None:
    port, address, tags = outbound.port, outbound.address, outbound.tags
    if (
        1 <= port <= MAX_PORT
        and (not address or is_ip(address))
        and SERVICE_TAG in tags
        and tags_known_valid(tags)
    ):
        return  # the common case, decided without building a single field path
    path = f"networking.outbound[{index}]"
    check_port(out, f"{path}.port", port)
    if address and not is_ip(address):
        out.append(Violation(f"{path}.address", "address has to be valid IP address"))
    check_service_tags(out, f"{path}.tags", tags)


def _check_gateway(out: list[Violation], gateway: Gateway) -> None:
    path = "networking.gateway.tags"
    protocol = gateway.tags.get(PROTOCOL_TAG)
    # Kuma compares case-sensitively here, unlike the inbound protocol tag.
    if protocol is not None and protocol != "tcp":
        out.append(
            Violation(
                tag_field(path, PROTOCOL_TAG),
                f'other values than tcp are not allowed, provided value "{protocol}"',
            )
        )
    check_service_tags(out, path, gateway.tags)


def _check_probes(out: list[Violation], probes: Probes | None) -> None:
    if probes is None:
        return
    check_port(out, "probes.port", probes.port)
    for index, endpoint in enumerate(probes.endpoints):
        path = f"probes.endpoints[{index}]"
        check_port(out, f"{path}.inboundPort", endpoint.inbound_port)
        if _URL_PATH.fullmatch(endpoint.inbound_path) is None:
            out.append(Violation(f"{path}.inboundPath", "should be a valid URL Path"))
        if _URL_PATH.fullmatch(endpoint.path) is None:
            out.append(Violation(f"{path}.path", "should be a valid URL Path"))


def _check_transparent_proxying(out: list[Violation], proxying: TransparentProxying) -> None:
    """Not in Kuma (its proto decoder rejects what does not fit a uint32 or the enum).

    A redirect port of 0 is Kuma's "unset" (transparent proxying is then off for that family).
    """
    path = "networking.transparentProxying"
    check_optional_port(out, f"{path}.redirectPortInbound", proxying.redirect_port_inbound)
    check_optional_port(out, f"{path}.redirectPortOutbound", proxying.redirect_port_outbound)
    check_optional_port(out, f"{path}.redirectPortInboundV6", proxying.redirect_port_inbound_v6)
    mode = proxying.ip_family_mode
    if mode is not None and mode not in IP_FAMILY_MODES:
        out.append(
            Violation(
                f"{path}.ipFamilyMode",
                f"invalid value {go_quote(mode)}. Allowed values: {', '.join(IP_FAMILY_MODES)}",
            )
        )


def _check_listener_clashes(out: list[Violation], networking: Networking) -> None:
    """Not in Kuma: two inbounds or two outbounds on the same address and port.

    Envoy names listeners ``inbound:<address>:<port>`` and ``outbound:<address>:<port>``, so such
    a pair yields two listeners with one name: one silently replaces the other in the
    generated config (or Envoy rejects the update), and the proxy half works. Kuma accepts
    these Dataplanes; refusing them at the door names the culprit instead. An inbound and an
    outbound on the same address and port have different names but cannot both bind the
    socket, so that is refused too. Wildcard overlaps (0.0.0.0 vs a specific address) are left
    alone: whether they clash depends on socket options, not on the document.
    """
    if len(networking.inbound) + len(networking.outbound) < 2:
        return
    address = networking.address
    sockets = [(inbound.address or address, inbound.port) for inbound in networking.inbound]
    sockets += [
        (outbound.address or DEFAULT_OUTBOUND_ADDRESS, outbound.port)
        for outbound in networking.outbound
    ]
    if len(set(sockets)) == len(sockets):
        return  # the common case: no clash, nothing more to look at
    owners: dict[tuple[str, int], str] = {}
    inbounds = len(networking.inbound)
    for position, socket in enumerate(sockets):
        kind, index = ("inbound", position)
        if position >= inbounds:
            kind, index = ("outbound", position - inbounds)
        port = socket[1]
        if not 1 <= port <= MAX_PORT:
            continue  # already reported as out of range
        owner = owners.get(socket)
        if owner is None:
            owners[socket] = f"networking.{kind}[{index}]"
        else:
            out.append(
                Violation(
                    f"networking.{kind}[{index}].port", f"port {port} is already used by {owner}"
                )
            )
