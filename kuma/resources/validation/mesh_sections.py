"""The Mesh's logging, tracing, metrics and constraints sections, and a Dataplane's metrics
(Kuma v2.7: ``mesh_validator.go``, ``validateMetricsBackend`` in ``dataplane_validator.go``).

The sections stay documents in the model (a round trip gives back what the user wrote; Kuma
keeps each backend's ``conf`` as a free-form struct too), so these checks read plain mappings
and report a value of the wrong type as a violation of its own rather than failing.

Paths and messages are Kuma's, including its quirks: a logging or tracing backend's ``conf``
is reported at ``...config.<field>`` (the key in the document is ``conf``), a metrics
backend's at ``...conf``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..errors import Violation
from .common import PORT_RANGE, go_quote, tag_field

LOGGING_TYPES = ("tcp", "file")
TRACING_TYPES = ("zipkin", "datadog")
METRICS_TYPE = "prometheus"
ZIPKIN_API_VERSIONS = ("httpJsonV1", "httpJson", "httpProto")

_TAG_NAME = re.compile(r"[a-zA-Z0-9.\-_:/]*")
_SELECTOR_VALUE = re.compile(r"[a-zA-Z0-9.\-_:/]*|\*")
_URI_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*:")


def _unknown_type(types: Sequence[str]) -> str:
    return "unknown backend type. Available backends: " + ", ".join(go_quote(t) for t in types)


def _string(value: Any) -> str:
    """A scalar as the string Kuma's proto decoding sees (null: empty)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(out: list[Violation], path: str, value: Any) -> list[Any]:
    """A list field; anything else but null is reported."""
    if value is None:
        return []
    if not isinstance(value, list):
        out.append(Violation(path, "must be a list"))
        return []
    return value


def _conf(out: list[Violation], path: str, backend: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A backend's ``conf``; None (reported as Kuma's "could not parse config") when it is not
    a mapping."""
    conf = backend.get("conf")
    if conf is None:
        return {}
    if not isinstance(conf, Mapping):
        out.append(Violation(path, "could not parse config: must be an object"))
        return None
    return conf


# --- logging ---------------------------------------------------------------------------------


def check_logging(out: list[Violation], logging: Mapping[str, Any] | None) -> None:
    if logging is None:
        return
    used: set[str] = set()
    for index, raw in enumerate(_items(out, "logging.backends", logging.get("backends"))):
        path = f"logging.backends[{index}]"
        backend = _mapping(raw)
        name = _string(backend.get("name"))
        if not name:
            out.append(Violation(f"{path}.name", "cannot be empty"))
        kind = _string(backend.get("type"))
        if kind in LOGGING_TYPES:
            conf = _conf(out, f"{path}.config", backend)
            if conf is not None and kind == "file":
                if not _string(conf.get("path")):
                    out.append(Violation(f"{path}.config.path", "cannot be empty"))
            elif conf is not None:
                _check_tcp_address(out, f"{path}.config.address", _string(conf.get("address")))
        else:
            out.append(Violation(f"{path}.type", _unknown_type(LOGGING_TYPES)))
        if name in used:
            out.append(
                Violation(
                    f"{path}.name", f"{go_quote(name)} name is already used for another backend"
                )
            )
        used.add(name)
    default = _string(logging.get("defaultBackend"))
    if default and default not in used:
        out.append(
            Violation(
                "logging.defaultBackend", "has to be set to one of the logging backend in mesh"
            )
        )


def split_host_port(address: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``: (host, port), or None when it is malformed."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0 or address[end + 1 : end + 2] != ":":
            return None
        host, port = address[1:end], address[end + 2 :]
        return None if "[" in port or "]" in port else (host, port)
    host, colon, port = address.rpartition(":")
    if not colon or ":" in host or "[" in host or "]" in host:
        return None
    return host, port


def _check_tcp_address(out: list[Violation], path: str, address: str) -> None:
    if not address:
        out.append(Violation(path, "cannot be empty"))
        return
    parts = split_host_port(address)
    if parts is None or not parts[0] or not parts[1]:
        out.append(Violation(path, "has to be in format of HOST:PORT"))


# --- tracing ---------------------------------------------------------------------------------


def check_tracing(out: list[Violation], tracing: Mapping[str, Any] | None) -> None:
    if tracing is None:
        return
    used: set[str] = set()
    for index, raw in enumerate(_items(out, "tracing.backends", tracing.get("backends"))):
        path = f"tracing.backends[{index}]"
        backend = _mapping(raw)
        name = _string(backend.get("name"))
        if not name:
            out.append(Violation(f"{path}.name", "cannot be empty"))
        sampling = backend.get("sampling")
        if sampling is not None and (
            isinstance(sampling, bool)
            or not isinstance(sampling, int | float)
            or not 0.0 <= sampling <= 100.0
        ):
            out.append(Violation(f"{path}.sampling", "has to be in [0.0 - 100.0] range"))
        kind = _string(backend.get("type"))
        if kind in TRACING_TYPES:
            conf = _conf(out, f"{path}.config", backend)
            if conf is not None and kind == "zipkin":
                _check_zipkin(out, f"{path}.config", conf)
            elif conf is not None:
                _check_datadog(out, f"{path}.config", conf)
        else:
            out.append(Violation(f"{path}.type", _unknown_type(TRACING_TYPES)))
        if name in used:
            out.append(
                Violation(
                    f"{path}.name", f"{go_quote(name)} name is already used for another backend"
                )
            )
        used.add(name)
    default = _string(tracing.get("defaultBackend"))
    if default and default not in used:
        out.append(
            Violation(
                "tracing.defaultBackend", "has to be set to one of the tracing backend in mesh"
            )
        )


def _check_zipkin(out: list[Violation], path: str, conf: Mapping[str, Any]) -> None:
    api_version = _string(conf.get("apiVersion"))
    if api_version and api_version not in ZIPKIN_API_VERSIONS:
        out.append(
            Violation(
                f"{path}.apiVersion",
                "has invalid value. Allowed values: " + ", ".join(ZIPKIN_API_VERSIONS),
            )
        )
    url = _string(conf.get("url"))
    if not url:
        out.append(Violation(f"{path}.url", "cannot be empty"))
        return
    port = _request_uri_port(url)
    if port is None:
        out.append(Violation(f"{path}.url", "invalid URL"))
    elif not port:
        out.append(Violation(f"{path}.url", "port has to be explicitly specified"))


def _request_uri_port(url: str) -> str | None:
    """Go's ``url.ParseRequestURI(url).Port()``: None when ``url`` is neither an absolute URL
    nor an absolute path; "" when it names no port."""
    if any(c in url for c in " \x7f") or any(ord(c) < 0x20 for c in url):
        return None
    if _URI_SCHEME.match(url) is None:
        return "" if url.startswith("/") else None
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return None
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        _, _, rest = host.partition("]")
        return rest[1:] if rest.startswith(":") else ""
    if ":" not in host:
        return ""
    port = host.rpartition(":")[2]
    return port if not port or port.isdigit() else None


def _check_datadog(out: list[Violation], path: str, conf: Mapping[str, Any]) -> None:
    if not _string(conf.get("address")):
        out.append(Violation(f"{path}.address", "cannot be empty"))
    port = conf.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        out.append(Violation(f"{path}.port", PORT_RANGE))


# --- metrics ---------------------------------------------------------------------------------


def check_metrics(out: list[Violation], metrics: Mapping[str, Any] | None) -> None:
    if metrics is None:
        return
    used: set[str] = set()
    for index, raw in enumerate(_items(out, "metrics.backends", metrics.get("backends"))):
        path = f"metrics.backends[{index}]"
        backend = _mapping(raw)
        name = _string(backend.get("name"))
        if name in used:
            out.append(
                Violation(
                    f"{path}.name", f"{go_quote(name)} name is already used for another backend"
                )
            )
        if _string(backend.get("type")) != METRICS_TYPE:
            out.append(Violation(f"{path}.type", _unknown_type((METRICS_TYPE,))))
        else:
            check_prometheus_conf(out, f"{path}.conf", backend)
        used.add(name)
    enabled = _string(metrics.get("enabledBackend"))
    if enabled and enabled not in used:
        out.append(
            Violation("metrics.enabledBackend", "has to be set to one of the backends in the mesh")
        )


def check_dataplane_metrics(out: list[Violation], metrics: Mapping[str, Any] | None) -> None:
    """A Dataplane's own ``metrics`` backend (standard proxies only, as in Kuma)."""
    if metrics is None:
        return
    if _string(metrics.get("type")) != METRICS_TYPE:
        out.append(Violation("metrics.type", _unknown_type((METRICS_TYPE,))))
    else:
        check_prometheus_conf(out, "metrics.conf", metrics)


def check_prometheus_conf(out: list[Violation], path: str, backend: Mapping[str, Any]) -> None:
    conf = _conf(out, path, backend)
    if conf is None:
        return
    tls = conf.get("tls")
    if "skipMTLS" in conf and conf.get("skipMTLS") is not None and tls is not None:
        skip = conf.get("skipMTLS") is True
        mode = _string(_mapping(tls).get("mode")) or "activeMTLSBackend"
        # Kuma accepts the pair only when both say the same thing.
        if not ((not skip and mode == "activeMTLSBackend") or (skip and mode == "disabled")):
            out.append(Violation(path, "skipMTLS and tls configuration cannot be defined together"))
            return
    regex = _string(_mapping(conf.get("envoy")).get("filterRegex"))
    if regex:
        try:
            re.compile(regex)
        except re.error as error:
            out.append(
                Violation(f"{path}.envoy.filterRegex", f"provided regexp isn't correct: {error}")
            )
            return
    seen: set[str] = set()
    for index, raw in enumerate(_items(out, f"{path}.aggregate", conf.get("aggregate"))):
        name = _string(_mapping(raw).get("name"))
        if name in seen:
            out.append(
                Violation(
                    f"{path}.aggregate[{index}].name",
                    f"duplicate entry: {name}, values have to be unique",
                )
            )
            continue
        seen.add(name)


# --- constraints -----------------------------------------------------------------------------


def check_constraints(out: list[Violation], constraints: Mapping[str, Any] | None) -> None:
    if constraints is None:
        return
    proxy = _mapping(constraints.get("dataplaneProxy"))
    for section in ("requirements", "restrictions"):
        base = f"constraints.dataplaneProxy.{section}"
        for index, raw in enumerate(_items(out, base, proxy.get(section))):
            _check_selector(out, f"{base}[{index}].tags", _mapping(_mapping(raw).get("tags")))


def _check_selector(out: list[Violation], path: str, tags: Mapping[str, Any]) -> None:
    """Kuma's ``ValidateSelector`` with at least one tag required; values may be ``*``."""
    if not tags:
        out.append(Violation(path, "must have at least one tag"))
    for key in sorted(tags):
        value = _string(tags[key])
        field = tag_field(path, key)
        if not key:
            out.append(Violation(path, "tag name must be non-empty"))
        if _TAG_NAME.fullmatch(key) is None:
            out.append(
                Violation(
                    field,
                    "tag name must consist of alphanumeric characters, dots, dashes, slashes "
                    "and underscores",
                )
            )
        if not value:
            out.append(Violation(field, "tag value must be non-empty"))
        if _SELECTOR_VALUE.fullmatch(value) is None:
            out.append(
                Violation(
                    field,
                    "tag value must consist of alphanumeric characters, dots, dashes, slashes "
                    'and underscores or be "*"',
                )
            )
