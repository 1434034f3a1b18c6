"""MeshGateway rules (Kuma: gateway_validator.go and the selector/hostname helpers of
validators.go).

Kuma's order: the selectors (at least one, each a ``match`` naming ``kuma.io/service``; only
one when a listener is crossMesh), the gateway's tags (no well-known Dataplane tags), then the
listeners one by one (hostname, port, protocol, TLS, tags) and last the conflicts between
listeners sharing a port. Kuma reports those conflicts in Go's random map order; here they come
port by port, in the listeners' order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import Violation
from ..model import PROTOCOL_TAG, SERVICE_TAG, ZONE_TAG, GatewayListener, MeshGateway
from .common import (
    MISSING_SERVICE_TAG,
    PORT_RANGE,
    TAG_KEY_CHARACTERS,
    check_mesh_name,
    check_name,
    go_quote,
    tag_field,
)

_EXTERNAL_SERVICE_TAG = "kuma.io/external-service-name"
#: Tags that are properties of Dataplanes: a gateway's or listener's tags may not set them.
_RESERVED = (_EXTERNAL_SERVICE_TAG, PROTOCOL_TAG, SERVICE_TAG, ZONE_TAG)
_TAG_KEY = re.compile(r"[a-zA-Z0-9.\-_:/]*")
_SELECTOR_VALUE = re.compile(r"[a-zA-Z0-9.\-_:/]*|\*")
_SELECTOR_VALUE_CHARACTERS = (
    "tag value must consist of alphanumeric characters, dots, dashes, slashes and underscores"
    ' or be "*"'
)
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_MAX_HOSTNAME = 253
EMPTY = "cannot be empty"


def check_selector(
    out: list[Violation],
    path: str,
    tags: Mapping[str, str],
    *,
    require_service: bool = False,
    reserved: tuple[str, ...] = (),
) -> None:
    """Kuma's ValidateSelector: keys sorted; a value may be ``*``."""
    if require_service and not tags:
        out.append(Violation(path, "must have at least one tag"))
    for key in sorted(tags):
        value = tags[key]
        field = tag_field(path, key)
        if not key:
            out.append(Violation(path, "tag name must be non-empty"))
        if _TAG_KEY.fullmatch(key) is None:
            out.append(Violation(field, TAG_KEY_CHARACTERS))
        if key in reserved:
            out.append(Violation(field, f"tag name must not be {go_quote(key)}"))
        if not value:
            out.append(Violation(field, "tag value must be non-empty"))
        if _SELECTOR_VALUE.fullmatch(value) is None:
            out.append(Violation(field, _SELECTOR_VALUE_CHARACTERS))
    if require_service and SERVICE_TAG not in tags:
        out.append(Violation(path, MISSING_SERVICE_TAG))


def check_hostname(out: list[Violation], path: str, hostname: str) -> None:
    """Kuma's ValidateHostname: ``*``, ``*.domain`` or a domain."""
    if hostname == "*":
        return
    if len(hostname) > _MAX_HOSTNAME:
        out.append(Violation(path, "must be at most 253 characters"))
    if hostname.startswith("*."):
        if _DOMAIN.fullmatch(hostname[2:]) is None:
            out.append(Violation(path, "invalid wildcard domain"))
        return
    if _DOMAIN.fullmatch(hostname) is None:
        out.append(Violation(path, "invalid hostname"))


def _check_tls(out: list[Violation], path: str, listener: GatewayListener) -> None:
    tls = listener.tls
    if listener.protocol == "HTTPS":
        if listener.cross_mesh:
            out.append(Violation(f"{path}.protocol", "protocol is not supported with crossMesh"))
        elif tls is None:
            out.append(Violation(f"{path}.tls", EMPTY))
        elif tls.mode == "PASSTHROUGH":
            out.append(Violation(f"{path}.tls.mode", "mode is not supported on HTTPS listeners"))
    if tls is None:
        return
    if listener.cross_mesh:
        if tls.mode != "NONE" or tls.certificates:
            out.append(Violation(f"{path}.tls", "must be empty with crossMesh"))
    elif tls.mode == "NONE":
        out.append(Violation(f"{path}.tls.mode", EMPTY))
    elif tls.mode == "TERMINATE":
        if not tls.certificates:
            message = "cannot be empty in TLS termination mode"
            out.append(Violation(f"{path}.tls.certificates", message))
        elif len(tls.certificates) > 2:  # an RSA and an ECDSA certificate at most
            message = "cannot have more than 2 certificates"
            out.append(Violation(f"{path}.tls.certificates", message))


def _check_conflicts(
    out: list[Violation], path: str, listeners: tuple[GatewayListener, ...]
) -> None:
    """Listeners sharing a port become one Envoy listener: one protocol, distinct hostnames,
    one connection limit."""
    by_port: dict[int, list[int]] = {}
    for index, listener in enumerate(listeners):
        by_port.setdefault(listener.port, []).append(index)
    for indexes in by_port.values():
        on_port = [listeners[i] for i in indexes]
        if len({listener.protocol for listener in on_port}) > 1:
            message = "protocol conflicts with other listeners on this port"
            out.extend(Violation(f"{path}[{i}]", message) for i in indexes)
        hostnames: dict[str, list[int]] = {}
        for index in indexes:
            hostnames.setdefault(listeners[index].effective_hostname, []).append(index)
        for same in hostnames.values():
            if len(same) > 1:
                message = "multiple listeners for hostname on this port"
                out.extend(Violation(f"{path}[{i}]", message) for i in same)
        limited = [i for i in indexes if _limit(listeners[i])]
        if len({_limit(listeners[i]) for i in limited}) > 1:
            message = "conflicting values for this port"
            field = "resources.connectionLimit"
            out.extend(Violation(f"{path}[{i}].{field}", message) for i in limited)


def _limit(listener: GatewayListener) -> int:
    return listener.resources.connection_limit if listener.resources is not None else 0


def validate_mesh_gateway(gateway: MeshGateway, out: list[Violation]) -> None:
    check_name(out, "name", gateway.name)
    check_mesh_name(out, gateway.mesh)
    selectors = gateway.selectors or ()
    conf = gateway.conf
    cross_mesh = conf is not None and any(listener.cross_mesh for listener in conf.listeners)
    if not selectors:
        out.append(Violation("selectors", "must have at least one element"))
    for index, selector in enumerate(selectors):
        check_selector(out, f"selectors[{index}].match", selector.match, require_service=True)
        if index > 0 and cross_mesh:
            out.append(Violation(f"selectors[{index}]", "there can be at most one selector"))
    check_selector(out, "tags", gateway.tags or {}, reserved=_RESERVED)
    if conf is None:
        out.append(Violation("conf", EMPTY))
        return
    path = "conf.listeners"
    if not conf.listeners:
        out.append(Violation(path, EMPTY))
    for index, listener in enumerate(conf.listeners):
        at = f"{path}[{index}]"
        if listener.hostname:  # optional: routes may name the hosts
            check_hostname(out, f"{at}.hostname", listener.hostname)
        if not 0 < listener.port <= 65535:
            out.append(Violation(f"{at}.port", PORT_RANGE))
        if listener.protocol == "NONE":
            out.append(Violation(f"{at}.protocol", EMPTY))
        _check_tls(out, at, listener)
        check_selector(out, f"{at}.tags", listener.tags, reserved=_RESERVED)
    _check_conflicts(out, path, conf.listeners)
