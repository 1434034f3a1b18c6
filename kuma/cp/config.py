"""kuma-cp configuration: Kuma's key names, a YAML file, and ``KUMA_*`` environment overrides.

Precedence, lowest first: built-in defaults, the ``-c`` file, the environment. The environment
name of a key is ``KUMA_`` + its path with every camelCase word upper-cased and joined by ``_``
(``dpServer.port`` -> ``KUMA_DP_SERVER_PORT``), exactly as Kuma does. Options of a store plugin
(``store.<type>.*``) are passed to the plugin as a mapping; the plugin validates them.

Every bad value stops start-up with a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from .config_authn import DpServerAuthn, check_authn
from .config_base import ConfigError as ConfigError
from .config_base import Section
from .mads_config import MonitoringAssignmentServer, check_mads
from .multizone_config import GLOBAL, STANDALONE, ZONE, Multizone, check_multizone

ENV_PREFIX = "KUMA_"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go-style duration (``10s``, ``1m30s``, ``250ms``) in seconds; ValueError otherwise."""
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 10s, 1m30s, 500ms)")
    return total


class DpServer(Section):
    port: int = 5678
    #: Address the ADS and bootstrap server binds to.
    interface: str = "0.0.0.0"
    authn: DpServerAuthn = msgspec.field(default_factory=DpServerAuthn)
    #: The certificate of the dp server; empty: ``general.tlsCertFile``, else the generated one.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: Not in Kuma (always TLS): false serves ADS and /bootstrap in plain text, for a lab or a
    #: benchmark; tokens then cross the network readable.
    tls_enabled: bool = True


class General(Section):
    #: The certificate and key of every TLS server unless one sets its own.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: Where kuma-cp writes ``kuma-cp.crt``, the certificate proxies trust (Kuma: ~/.kuma).
    work_dir: str = "~/.kuma"


class ApiHttp(Section):
    port: int = 5681
    interface: str = "127.0.0.1"


class ApiHttps(Section):
    enabled: bool = True
    port: int = 5682
    #: HTTPS is for remote kumactl (reads; writes and secrets need the admin token).
    interface: str = "0.0.0.0"
    tls_cert_file: str = ""
    tls_key_file: str = ""


class ApiAuth(Section):
    #: Bearer token that grants writes to callers that are not on loopback; empty: none can.
    admin_token: str = ""


class ApiGui(Section):
    #: Serve the web GUI under /gui on the API port.
    enabled: bool = True


class ApiServer(Section):
    http: ApiHttp = msgspec.field(default_factory=ApiHttp)
    https: ApiHttps = msgspec.field(default_factory=ApiHttps)
    auth: ApiAuth = msgspec.field(default_factory=ApiAuth)
    gui: ApiGui = msgspec.field(default_factory=ApiGui)
    #: Largest request body the REST API reads (bigger ones get 413).
    max_request_bytes: int = 1024 * 1024


class BootstrapParams(Section):
    admin_port: int = 9901
    #: Envoy's xDS transport for bootstraps served by the CP: DELTA_GRPC or GRPC (SotW).
    xds_transport: str = "DELTA_GRPC"


class BootstrapServer(Section):
    params: BootstrapParams = msgspec.field(default_factory=BootstrapParams)


class XdsServer(Section):
    dataplane_deregistration_delay: str = "10s"
    dataplane_status_flush_interval: str = "10s"


class RuntimeUniversal(Section):
    #: How long a registered Dataplane (``kuma.io/dp-registration``) may have no stream on any
    #: instance before it is deleted (Kuma's key; Kuma applies it to every offline Dataplane).
    dataplane_cleanup_age: str = "72h"


class Runtime(Section):
    universal: RuntimeUniversal = msgspec.field(default_factory=RuntimeUniversal)


class Defaults(Section):
    skip_mesh_creation: bool = False


class Logging(Section):
    level: str = "info"
    #: ``text`` (human, key=value) or ``json`` (one object a line).
    format: str = "text"


class StoreConfig(msgspec.Struct, kw_only=True):
    type: str = "memory"
    #: ``store.<type>`` sections, passed to the plugin of that name.
    options: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)

    def options_for(self, name: str) -> dict[str, Any]:
        return self.options.get(name, {})


class CpConfig(msgspec.Struct, kw_only=True):
    #: ``standalone`` (the default), ``zone`` or ``global`` (kuma/cp/multizone_config.py).
    mode: str = STANDALONE
    multizone: Multizone = msgspec.field(default_factory=Multizone)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    general: General = msgspec.field(default_factory=General)
    dp_server: DpServer = msgspec.field(default_factory=DpServer)
    api_server: ApiServer = msgspec.field(default_factory=ApiServer)
    bootstrap_server: BootstrapServer = msgspec.field(default_factory=BootstrapServer)
    xds_server: XdsServer = msgspec.field(default_factory=XdsServer)
    defaults: Defaults = msgspec.field(default_factory=Defaults)
    runtime: Runtime = msgspec.field(default_factory=Runtime)
    logging: Logging = msgspec.field(default_factory=Logging)
    monitoring_assignment_server: MonitoringAssignmentServer = msgspec.field(
        default_factory=MonitoringAssignmentServer
    )

    @property
    def zone_name(self) -> str:
        """The zone this control plane stamps on its Dataplanes; empty unless in zone mode."""
        return self.multizone.zone.name if self.mode == ZONE else ""

    @property
    def is_federated_zone(self) -> bool:
        """A zone connected to a global control plane (Kuma's ``IsFederatedZoneCP``)."""
        return self.mode == ZONE and bool(self.multizone.zone.global_address)

    @property
    def is_global(self) -> bool:
        return self.mode == GLOBAL

    @property
    def deregistration_delay(self) -> float:
        return parse_duration(self.xds_server.dataplane_deregistration_delay)

    @property
    def dataplane_cleanup_age(self) -> float:
        return parse_duration(self.runtime.universal.dataplane_cleanup_age)

    @property
    def status_flush_interval(self) -> float:
        return parse_duration(self.xds_server.dataplane_status_flush_interval)


# Sections other than ``store`` and the struct that holds each.
_SECTIONS: dict[str, type[Section]] = {
    "general": General,
    "dpServer": DpServer,
    "apiServer": ApiServer,
    "bootstrapServer": BootstrapServer,
    "xdsServer": XdsServer,
    "defaults": Defaults,
    "runtime": Runtime,
    "logging": Logging,
    "multizone": Multizone,
    "monitoringAssignmentServer": MonitoringAssignmentServer,
}
#: Top-level keys that are a plain value, not a section.
_SCALARS = ("mode",)


def env_name(path: str) -> str:
    """``store.etcd.endpoints`` -> ``KUMA_STORE_ETCD_ENDPOINTS``; ``dpServer.port`` ->
    ``KUMA_DP_SERVER_PORT``."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", path).replace(".", "_")
    return ENV_PREFIX + words.upper()


def _leaf_paths(cls: type[msgspec.Struct], prefix: str) -> dict[str, Any]:
    """Every leaf key path of a section with its declared type."""
    paths: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        path = f"{prefix}.{field.encode_name}"
        kind = field.type
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            paths.update(_leaf_paths(kind, path))
        else:
            paths[path] = kind
    return paths


def _known_env_keys() -> dict[str, str]:
    keys: dict[str, str] = {}
    for section, cls in _SECTIONS.items():
        for path in _leaf_paths(cls, section):
            keys[env_name(path)] = path
    keys[env_name("store.type")] = "store.type"
    for scalar in _SCALARS:
        keys[env_name(scalar)] = scalar
    return keys


def _string_keys() -> set[str]:
    """Keys declared as plain strings: their environment value is taken verbatim, so that a
    token such as ``0123`` or ``a,b`` is not turned into a number or a list."""
    return {
        path
        for section, cls in _SECTIONS.items()
        for path, kind in _leaf_paths(cls, section).items()
        if kind is str
    } | set(_SCALARS)


def _list_keys() -> set[str]:
    """Keys declared as lists: one value in the environment is a list of one."""
    return {
        path
        for section, cls in _SECTIONS.items()
        for path, kind in _leaf_paths(cls, section).items()
        if getattr(kind, "__origin__", None) is list
    }


def _env_value(raw: str) -> Any:
    """Environment values are YAML scalars; a comma-separated string becomes a list."""
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str) and "," in value:
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    node = tree
    parts = path.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _camel(words: list[str]) -> str:
    return words[0] + "".join(w.capitalize() for w in words[1:])


def apply_env(tree: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Overlay ``KUMA_*`` variables onto the raw config tree (in place)."""
    known = _known_env_keys()
    verbatim = _string_keys()
    lists = _list_keys()
    for name, raw in environ.items():
        if name in known:
            path = known[name]
            value = raw if path in verbatim else _env_value(raw)
            if path in lists and isinstance(value, str):
                value = [value] if value else []
            _set_path(tree, path, value)
    store_type = str(tree.get("store", {}).get("type", "memory"))
    # Plugin options: KUMA_STORE_<TYPE>_<WORDS> -> store.<type>.<camelWords>
    plugin_prefix = env_name(f"store.{store_type}") + "_"
    for name, raw in environ.items():
        if name.startswith(plugin_prefix) and name not in known:
            words = name.removeprefix(plugin_prefix).lower().split("_")
            value = _env_value(raw)
            key = _camel(words)
            if key == "endpoints" and isinstance(value, str):
                value = [value]  # a single URL is a list of one
            _set_path(tree, f"store.{store_type}.{key}", value)


def _convert_section(name: str, cls: type[Section], raw: object) -> Section:
    try:
        return msgspec.convert(raw, cls, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = re.search(r" - at `\$\.?([^`]*)`$", text)
        where = f"{name}.{match.group(1)}" if match and match.group(1) else name
        reason = text[: match.start()] if match else text
        unknown = re.match(r"Object contains unknown field `([^`]+)`", reason)
        if unknown:
            raise ConfigError(f"{where}.{unknown.group(1)}: unknown key") from None
        raise ConfigError(f"{where}: {reason}") from None


def build_config(tree: Mapping[str, Any]) -> CpConfig:
    """Turn a raw tree (file + env) into a checked CpConfig."""
    unknown = sorted(set(tree) - set(_SECTIONS) - {"store", *_SCALARS})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key")
    mode = tree.get("mode", STANDALONE)
    if not isinstance(mode, str):
        raise ConfigError(f"mode: must be standalone, zone or global, got {mode!r}")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        sections[name] = _convert_section(name, cls, tree.get(name) or {})
    raw_store = tree.get("store") or {}
    if not isinstance(raw_store, Mapping):
        raise ConfigError("store: must be a mapping")
    store_type = raw_store.get("type", "memory")
    if not isinstance(store_type, str) or not store_type:
        raise ConfigError(f"store.type: must be a store name, got {store_type!r}")
    options: dict[str, dict[str, Any]] = {}
    for key, value in raw_store.items():
        if key == "type":
            continue
        if not isinstance(value, Mapping):
            raise ConfigError(f"store.{key}: must be a mapping of options")
        options[str(key)] = dict(value)
    config = CpConfig(
        mode=mode,
        multizone=sections["multizone"],
        store=StoreConfig(type=store_type, options=options),
        general=sections["general"],
        dp_server=sections["dpServer"],
        api_server=sections["apiServer"],
        bootstrap_server=sections["bootstrapServer"],
        xds_server=sections["xdsServer"],
        defaults=sections["defaults"],
        runtime=sections["runtime"],
        logging=sections["logging"],
        monitoring_assignment_server=sections["monitoringAssignmentServer"],
    )
    _check(config)
    return config


def _check(config: CpConfig) -> None:
    ports = {
        "dpServer.port": config.dp_server.port,
        "apiServer.http.port": config.api_server.http.port,
        "apiServer.https.port": config.api_server.https.port,
        "bootstrapServer.params.adminPort": config.bootstrap_server.params.admin_port,
    }
    for key, port in ports.items():
        if not 0 <= port <= 65535:
            raise ConfigError(f"{key}: port must be in the range [0, 65535], got {port}")
    xds = config.xds_server
    for key, text in (
        ("xdsServer.dataplaneDeregistrationDelay", xds.dataplane_deregistration_delay),
        ("xdsServer.dataplaneStatusFlushInterval", xds.dataplane_status_flush_interval),
        ("runtime.universal.dataplaneCleanupAge", config.runtime.universal.dataplane_cleanup_age),
    ):
        try:
            parse_duration(text)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    if config.status_flush_interval <= 0:
        raise ConfigError("xdsServer.dataplaneStatusFlushInterval: must be longer than 0")
    if config.dataplane_cleanup_age <= config.status_flush_interval:
        # Another instance's live stream is only known once its subscription was flushed.
        raise ConfigError(
            "runtime.universal.dataplaneCleanupAge: must be longer than "
            "xdsServer.dataplaneStatusFlushInterval"
        )
    if config.api_server.max_request_bytes < 1:
        raise ConfigError(
            "apiServer.maxRequestBytes: must be a positive number of bytes, "
            f"got {config.api_server.max_request_bytes}"
        )
    transport = config.bootstrap_server.params.xds_transport
    if transport not in ("DELTA_GRPC", "GRPC"):
        raise ConfigError(
            f"bootstrapServer.params.xdsTransport: must be DELTA_GRPC or GRPC, got {transport!r}"
        )
    check_authn(config.dp_server.authn)
    try:
        check_multizone(config.mode, config.multizone, parse_duration)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        check_mads(config.monitoring_assignment_server, parse_duration)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if config.logging.level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("logging.level: must be debug, info, warning or error")
    if config.logging.format not in ("text", "json"):
        raise ConfigError("logging.format: must be text or json")


def load_config(path: Path | None, environ: Mapping[str, str]) -> CpConfig:
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text (UTF-8) file") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the config must be a mapping")
        tree = loaded or {}
    apply_env(tree, environ)
    return build_config(tree)
