"""MeshAccessLog (Kuma ``pkg/plugins/policies/meshaccesslog``): Envoy access logs on a proxy's
inbounds (``from``, clients: Mesh only) and outbounds (``to``: Mesh or MeshService).

Schema: ``default.backends``, each ``{type: File|Tcp|OpenTelemetry}`` with ``file {path,
format}``, ``tcp {address, format}`` or ``openTelemetry {endpoint, body, attributes}``; a
format is ``{type: Plain|Json, plain, json [{key, value}], omitEmptyValues}``. Validation as
Kuma's validator, with its messages (govalidator's ``IsFilePath``/``IsURL`` rebuilt in
:mod:`kuma.policies.accesslog_format`).

Envoy change, as Kuma's plugin: for each backend, on every filter chain of a selected inbound
listener (from-rules, Mesh element), of each outbound listener (to-rules of its service) and of
a transparent proxy's outbound passthrough listeners (to-rules of service ``pass_through``,
destination ``external``), an access log appended to the HTTP connection manager or the TCP
proxy: File backends as ``envoy.access_loggers.file`` with Kuma's default formats (one for
HTTP, one for TCP), plain or JSON formats, and its placeholders substituted (``%KUMA_MESH%``,
``%KUMA_SOURCE_SERVICE%``, ``%KUMA_DESTINATION_SERVICE%``, ``%KUMA_SOURCE_ADDRESS%``,
``%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%``, ``%KUMA_TRAFFIC_DIRECTION%``); Envoy writes the file
on the proxy's host, kuma-cp never touches the path. OpenTelemetry backends as
:mod:`kuma.policies.accesslog_otel` (a per-proxy collector cluster each).

Tcp backends as :mod:`kuma.policies.accesslog_tcp` (a file logger on kuma-dp's access-log
pipe, streamed to the address by :mod:`kuma.dp.accesslogs`). Not generated: gateways (``to``
on a MeshGateway: policies are not applied to builtin gateways yet) and direct-access listeners.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import msgspec
from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from kuma.resources.accesslog_pipe import access_log_socket_name, go_temp_dir
from kuma.resources.errors import Violation
from kuma.resources.model import (
    MESH,
    MESH_GATEWAY,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    SERVICE_TAG,
    Dataplane,
    Policy,
    PolicyConf,
    PolicySpec,
)
from kuma.resources.policy import PolicyKind, register

from .accesslog_format import is_file_path, is_url, json_pair_is_valid
from .accesslog_otel import (
    Endpoint,
    collector_cluster,
    endpoint_of,
    numbering,
    otel_access_log,
)
from .accesslog_tcp import tcp_access_log
from .matching import InboundKey, KindPolicies
from .plugin import PolicyPlugin, register_plugin, service_element, update_hcm, update_tcp_proxy
from .rules import Rule

FILE_LOGGER = "envoy.access_loggers.file"

#: Kuma's default formats (plugin/xds/configurer.go), before placeholder substitution.
DEFAULT_TCP_FORMAT = (
    "[%START_TIME%] %RESPONSE_FLAGS% %KUMA_MESH% %KUMA_SOURCE_ADDRESS_WITHOUT_PORT%"
    "(%KUMA_SOURCE_SERVICE%)->%UPSTREAM_HOST%(%KUMA_DESTINATION_SERVICE%) took %DURATION%ms,"
    " sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes"
)
DEFAULT_HTTP_FORMAT = (
    '[%START_TIME%] %KUMA_MESH% "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"'
    " %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%"
    ' %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"'
    ' "%REQ(X-B3-TRACEID?X-DATADOG-TRACEID)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%"'
    ' "%KUMA_SOURCE_SERVICE%" "%KUMA_DESTINATION_SERVICE%" "%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%"'
    ' "%UPSTREAM_HOST%"'
)
INBOUND = "INBOUND"
OUTBOUND = "OUTBOUND"
#: Kuma's ``ServiceUnknown``: the source of inbound traffic, a proxy without a service.
UNKNOWN = "unknown"
#: Kuma's ``PassThroughService``: what to-rules are computed for on the passthrough listener.
PASSTHROUGH_SERVICE = "pass_through"


class JsonValue(PolicyConf, frozen=True):
    key: str = ""
    value: str = ""


class Format(PolicyConf, frozen=True):
    type: Literal["Plain", "Json"]
    plain: str | None = None
    json: tuple[JsonValue, ...] | None = None
    omit_empty_values: bool | None = None


class FileBackend(PolicyConf, frozen=True):
    format: Format | None = None
    path: str = ""


class TcpBackend(PolicyConf, frozen=True):
    format: Format | None = None
    address: str = ""


class OtelBackend(PolicyConf, frozen=True):
    attributes: tuple[JsonValue, ...] = ()
    body: Any = None
    endpoint: str = ""


class Backend(PolicyConf, frozen=True):
    type: Literal["Tcp", "File", "OpenTelemetry"]
    tcp: TcpBackend | None = None
    file: FileBackend | None = None
    open_telemetry: OtelBackend | None = None


class Conf(PolicyConf, frozen=True):
    backends: tuple[Backend, ...] | None = None


class MeshAccessLog(Policy, tag="MeshAccessLog", frozen=True):
    spec: PolicySpec[Conf] = msgspec.field(default_factory=PolicySpec)
    TYPE: ClassVar[str] = "MeshAccessLog"


def _validate_lists(spec: PolicySpec[Any], out: list[Violation]) -> None:
    if not spec.to and not spec.from_:
        out.append(Violation("spec", "at least one of 'from', 'to' has to be defined"))


def _validate_format(fmt: Format, path: str, out: list[Violation]) -> None:
    if fmt.type == "Plain":
        if fmt.plain is None:
            out.append(Violation(f"{path}.plain", "must be defined"))
        elif not fmt.plain:
            out.append(Violation(f"{path}.plain", "must not be empty"))
        return
    if fmt.json is None:
        out.append(Violation(f"{path}.json", "must be defined"))
        return
    if not fmt.json:
        out.append(Violation(f"{path}.json", "must not be empty"))
    for index, field in enumerate(fmt.json):
        at = f"{path}.json[{index}]"
        if not field.key:
            out.append(Violation(f"{at}.key", "key cannot be empty"))
        if not field.value:
            out.append(Violation(f"{at}.value", "value cannot be empty"))
        if not json_pair_is_valid(field.key, field.value):
            out.append(Violation(at, "is not a valid JSON object"))


def _validate_backend(backend: Backend, path: str, out: list[Violation]) -> None:
    sink: FileBackend | TcpBackend | None
    if backend.type == "File":
        sink, name = backend.file, "file"
    elif backend.type == "Tcp":
        sink, name = backend.tcp, "tcp"
    else:
        if backend.open_telemetry is None:
            out.append(Violation(f"{path}.openTelemetry", "must be defined"))
        return
    if sink is None:
        out.append(Violation(f"{path}.{name}", "must be defined"))
        return
    if sink.format is not None:
        _validate_format(sink.format, f"{path}.{name}.format", out)
    if isinstance(sink, FileBackend) and not is_file_path(sink.path):
        out.append(Violation(f"{path}.file.path", "file backend requires a valid path"))
    if isinstance(sink, TcpBackend) and not is_url(sink.address):
        out.append(Violation(f"{path}.tcp.address", "tcp backend requires valid address"))


def _validate_conf(conf: Conf | None, path: str, top: str, out: list[Violation]) -> None:
    if conf is None or conf.backends is None:
        out.append(Violation(f"{path}.backends", "must be defined"))
        return
    for index, backend in enumerate(conf.backends):
        _validate_backend(backend, f"{path}.backends[{index}]", out)


KIND = register(
    PolicyKind(
        name="MeshAccessLog",
        cls=MeshAccessLog,
        plural="meshaccesslogs",
        conf_type=Conf,
        top_kinds=(MESH, MESH_SUBSET, MESH_GATEWAY, MESH_SERVICE, MESH_SERVICE_SUBSET),
        to_kinds=(MESH, MESH_SERVICE),
        from_kinds=(MESH,),
        validate_conf=_validate_conf,
        validate_lists=_validate_lists,
        gateway_listener_tags=True,
        order=4,
    )
)


# --- Envoy ---------------------------------------------------------------------------------


def identifying_service(dataplane: Dataplane) -> str:
    """Kuma's ``GetIdentifyingService``: the first, sorted, of the proxy's service tags."""
    networking = dataplane.networking
    if networking is None:
        return UNKNOWN
    services = {i.tags[SERVICE_TAG] for i in networking.inbound if SERVICE_TAG in i.tags}
    if networking.gateway is not None and SERVICE_TAG in networking.gateway.tags:
        services.add(networking.gateway.tags[SERVICE_TAG])
    return min(services) if services else UNKNOWN


def proxy_ip(dataplane: Dataplane) -> str:
    """Kuma's ``GetIP``: the advertised address, else the address."""
    networking = dataplane.networking
    if networking is None:
        return ""
    return networking.advertised_address or networking.address


def _host_port_zero(ip: str) -> str:
    return f"[{ip}]:0" if ":" in ip else f"{ip}:0"  # Go's net.JoinHostPort(ip, "0")


class Placeholders:
    """Kuma's ``InterpolateKumaValues`` for one direction of one proxy."""

    def __init__(
        self, dataplane: Dataplane, direction: str, source: str, destination: str, pipe: str = ""
    ):
        ip = proxy_ip(dataplane)
        # Kuma's order: the address with port before the one without (a prefix of it).
        self.pairs = (
            ("%KUMA_SOURCE_ADDRESS%", _host_port_zero(ip)),
            ("%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%", ip),
            ("%KUMA_SOURCE_SERVICE%", source),
            ("%KUMA_DESTINATION_SERVICE%", destination),
            ("%KUMA_MESH%", dataplane.mesh),
            ("%KUMA_TRAFFIC_DIRECTION%", direction),
        )
        #: kuma-dp's access-log pipe (Tcp backends): from the node metadata, else Kuma's
        #: fallback path (see accesslog_tcp).
        self.pipe = pipe or access_log_socket_name(go_temp_dir(), dataplane.name, dataplane.mesh)

    def __call__(self, text: str) -> str:
        for placeholder, value in self.pairs:
            text = text.replace(placeholder, value)
        return text


def file_access_log(
    backend: FileBackend, default_format: str, interpolate: Placeholders
) -> accesslog_pb2.AccessLog:
    """Kuma's ``fileBackend``: the default or plain format (a newline appended) as text, or
    the JSON format's keys with their values substituted."""
    config = file_pb2.FileAccessLog(path=backend.path)
    log_format = config.log_format
    fmt = backend.format
    if fmt is not None and fmt.plain is None and fmt.json is not None:
        for pair in fmt.json:
            log_format.json_format.fields[pair.key].string_value = interpolate(pair.value)
    else:
        text = fmt.plain if fmt is not None and fmt.plain is not None else default_format
        log_format.text_format_source.inline_string = interpolate(text + "\n")
    if fmt is not None and fmt.omit_empty_values:
        log_format.omit_empty_values = True
    access_log = accesslog_pb2.AccessLog(name=FILE_LOGGER)
    access_log.typed_config.Pack(config)
    return access_log


#: Makes a backend's access log given the default format of the chain's kind (HTTP or TCP).
Logger = Callable[[str], accesslog_pb2.AccessLog]


def _logger(
    backend: Backend, interpolate: Placeholders, collectors: Mapping[Endpoint, int]
) -> Logger | None:
    """Kuma's ``envoyAccessLog`` for one backend, given the default format of the chain's
    kind; None for a backend with no sink."""
    tcp, file, otel = backend.tcp, backend.file, backend.open_telemetry
    if tcp is not None:  # Kuma's switch takes tcp first
        return lambda default: tcp_access_log(tcp, default, interpolate, interpolate.pipe)
    if file is not None:
        return lambda default: file_access_log(file, default, interpolate)
    if otel is not None:
        attributes = [(a.key, a.value) for a in otel.attributes]
        return lambda default: otel_access_log(
            otel.endpoint, otel.body, attributes, default, interpolate, collectors
        )
    return None


def configure_listener(
    listener: listener_pb2.Listener,
    conf: Conf | None,
    interpolate: Placeholders,
    collectors: Mapping[Endpoint, int],
) -> None:
    """Kuma's ``Configurer.Configure`` for each backend on each chain."""
    if conf is None:
        return
    for backend in conf.backends or ():
        logger = _logger(backend, interpolate, collectors)
        if logger is None:
            continue

        def http(manager: hcm_pb2.HttpConnectionManager, make: Logger = logger) -> None:
            manager.access_log.append(make(DEFAULT_HTTP_FORMAT))

        def tcp(proxy: tcp_proxy_pb2.TcpProxy, make: Logger = logger) -> None:
            proxy.access_log.append(make(DEFAULT_TCP_FORMAT))

        for chain in listener.filter_chains:
            update_hcm(chain, http)
            update_tcp_proxy(chain, tcp)


def collectors_of(policies: KindPolicies) -> dict[Endpoint, int]:
    """The OpenTelemetry collectors of every conf the proxy's rules hold, numbered."""
    rules = [policies.to_rules, *policies.from_rules.values()]
    confs: list[Conf | None] = [policies.conf(rule) for found in rules for rule in found]
    return numbering(
        endpoint_of(backend.open_telemetry.endpoint)
        for conf in confs
        if conf is not None
        for backend in conf.backends or ()
        if backend.open_telemetry is not None and backend.tcp is None and backend.file is None
    )


def _pipe(dataplane: Dataplane, policies: KindPolicies) -> str:
    return Placeholders(dataplane, "", "", "", policies.access_log_socket).pipe


class MeshAccessLogPlugin(PolicyPlugin):
    kind = KIND
    outbound_input_reads_proxy = True  # the proxy's identity and pipe, below

    def outbound_listener_input(self, policies: KindPolicies, rule: Rule | None) -> Any:
        # The log lines name the proxy (its service, address, mesh): a shared outbound
        # listener with an access log is shared only by proxies with the same identity.
        if rule is None:
            return None
        dataplane = policies.dataplane
        # A Tcp backend's pipe is the proxy's own (its name is in the path).
        tcp = any(b.tcp is not None for b in (policies.conf(rule) or Conf()).backends or ())
        identity = (
            [dataplane.mesh, proxy_ip(dataplane), identifying_service(dataplane)]
            + ([_pipe(dataplane, policies)] if tcp else [])
            if dataplane is not None
            else None
        )
        # The collectors' numbering names the clusters the listener's OpenTelemetry logs use.
        return [rule.conf, identity, sorted(collectors_of(policies).items())]

    def outbound_listener(
        self, listener: listener_pb2.Listener, policies: KindPolicies, service: str, protocol: str
    ) -> None:
        dataplane = policies.dataplane
        if dataplane is None:
            return
        conf: Conf | None = policies.to_conf(service_element(service))
        source = identifying_service(dataplane)
        interpolate = Placeholders(dataplane, OUTBOUND, source, service, policies.access_log_socket)
        configure_listener(listener, conf, interpolate, collectors_of(policies))

    def inbound_listener(
        self,
        listener: listener_pb2.Listener,
        policies: KindPolicies,
        inbound: InboundKey,
        protocol: str,
    ) -> None:
        dataplane = policies.dataplane
        if dataplane is None:
            return
        conf: Conf | None = policies.from_conf(inbound, {})
        destination = identifying_service(dataplane)
        interpolate = Placeholders(
            dataplane, INBOUND, UNKNOWN, destination, policies.access_log_socket
        )
        configure_listener(listener, conf, interpolate, collectors_of(policies))

    def passthrough_listener(self, listener: listener_pb2.Listener, policies: KindPolicies) -> None:
        # Kuma: the to-rules for its ``pass_through`` service, logged as going to "external".
        dataplane = policies.dataplane
        if dataplane is None:
            return
        conf: Conf | None = policies.to_conf(service_element(PASSTHROUGH_SERVICE))
        source = identifying_service(dataplane)
        interpolate = Placeholders(
            dataplane, OUTBOUND, source, "external", policies.access_log_socket
        )
        configure_listener(listener, conf, interpolate, collectors_of(policies))

    def own_clusters(self, policies: KindPolicies) -> list[cluster_pb2.Cluster]:
        dataplane = policies.dataplane
        ipv6 = dataplane is not None and ":" in proxy_ip(dataplane)
        return [
            collector_cluster(endpoint, index, ipv6)
            for endpoint, index in collectors_of(policies).items()
        ]


PLUGIN = register_plugin(MeshAccessLogPlugin())
