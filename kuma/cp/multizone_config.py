"""The ``mode`` key and the ``multizone`` section of kuma-cp's configuration: Kuma's key names
and defaults (``pkg/config/multizone``), checked like Kuma checks them: the section of the mode
the control plane runs in is validated (a zone needs a valid name, a global valid KDS server
settings); every duration must parse whatever the mode.

Modes: ``standalone`` (this project's default: one control plane, no zones), ``zone`` (its
Dataplanes carry ``kuma.io/zone``; with ``multizone.zone.globalAddress`` it is *federated*: a
global control plane authors meshes and policies) and ``global``.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from .config_base import Section

STANDALONE = "standalone"
ZONE = "zone"
GLOBAL = "global"
MODES = (STANDALONE, ZONE, GLOBAL)

_TLS_VERSIONS = ("TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3")
# A DNS name as Kuma's validator accepts it: dot-separated labels of letters, digits and
# hyphens, no label starting or ending with a hyphen.
_DNS_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class ZoneHealthCheck(Section):
    #: Both zero (Kuma's default: off) or both set.
    poll_interval: str = "0s"
    timeout: str = "0s"


class KdsServer(Section):
    """``multizone.global.kds``: the KDS server of a global control plane."""

    grpc_port: int = 5685
    refresh_interval: str = "1s"
    zone_insight_flush_interval: str = "10s"
    tls_enabled: bool = True
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_min_version: str = "TLSv1_2"
    tls_max_version: str = ""
    tls_cipher_suites: list[str] = msgspec.field(default_factory=list)
    max_msg_size: int = 10 * 1024 * 1024
    msg_send_timeout: str = "60s"
    nack_backoff: str = "5s"
    disable_sotw: bool = msgspec.field(default=False, name="disableSOTW")
    response_backoff: str = "0s"
    zone_health_check: ZoneHealthCheck = msgspec.field(default_factory=ZoneHealthCheck)


class KdsClient(Section):
    """``multizone.zone.kds``: how a zone control plane talks to global."""

    refresh_interval: str = "1s"
    tls_skip_verify: bool = False
    root_ca_file: str = ""
    #: The zone token global issued for this zone (beyond Kuma: its OSS KDS has no token).
    zone_token_file: str = ""
    max_msg_size: int = 10 * 1024 * 1024
    msg_send_timeout: str = "60s"
    nack_backoff: str = "5s"
    response_backoff: str = "0s"


class GlobalSettings(Section):
    kds: KdsServer = msgspec.field(default_factory=KdsServer)


class ZoneSettings(Section):
    #: The zone's name: the value of ``kuma.io/zone`` on its Dataplanes (Kuma's default).
    name: str = "default"
    #: ``grpcs://<global>:5685``; empty: a zone on its own (not federated).
    global_address: str = ""
    kds: KdsClient = msgspec.field(default_factory=KdsClient)
    disable_origin_label_validation: bool = False
    ingress_update_interval: str = "1s"


class Multizone(Section):
    global_: GlobalSettings = msgspec.field(default_factory=GlobalSettings, name="global")
    zone: ZoneSettings = msgspec.field(default_factory=ZoneSettings)


def durations(multizone: Multizone) -> dict[str, str]:
    """Every duration key of the section with its text (checked in every mode)."""
    kds, zone = multizone.global_.kds, multizone.zone
    return {
        "multizone.global.kds.refreshInterval": kds.refresh_interval,
        "multizone.global.kds.zoneInsightFlushInterval": kds.zone_insight_flush_interval,
        "multizone.global.kds.msgSendTimeout": kds.msg_send_timeout,
        "multizone.global.kds.nackBackoff": kds.nack_backoff,
        "multizone.global.kds.responseBackoff": kds.response_backoff,
        "multizone.global.kds.zoneHealthCheck.pollInterval": kds.zone_health_check.poll_interval,
        "multizone.global.kds.zoneHealthCheck.timeout": kds.zone_health_check.timeout,
        "multizone.zone.kds.refreshInterval": zone.kds.refresh_interval,
        "multizone.zone.kds.msgSendTimeout": zone.kds.msg_send_timeout,
        "multizone.zone.kds.nackBackoff": zone.kds.nack_backoff,
        "multizone.zone.kds.responseBackoff": zone.kds.response_backoff,
        "multizone.zone.ingressUpdateInterval": zone.ingress_update_interval,
    }


def check_multizone(mode: str, multizone: Multizone, seconds: Callable[[str], float]) -> None:
    """Raise ``ValueError("<key>: <reason>")`` for the first bad value. ``seconds`` parses a
    duration (ValueError when it cannot)."""
    if mode not in MODES:
        raise ValueError(f"mode: invalid mode {mode!r}, available modes: {', '.join(MODES)}")
    parsed: dict[str, float] = {}
    for key, text in durations(multizone).items():
        try:
            parsed[key] = seconds(text)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    if mode == GLOBAL:
        _check_global(multizone.global_.kds, parsed)
    elif mode == ZONE:
        _check_zone(multizone.zone, parsed)


def _positive(parsed: dict[str, float], *keys: str) -> None:
    for key in keys:
        if parsed[key] <= 0:
            raise ValueError(f"{key}: must be positive")


def _check_global(kds: KdsServer, parsed: dict[str, float]) -> None:
    where = "multizone.global.kds"
    if not 0 <= kds.grpc_port <= 65535:
        raise ValueError(f"{where}.grpcPort: must be in the range [0, 65535], got {kds.grpc_port}")
    _positive(parsed, f"{where}.refreshInterval", f"{where}.zoneInsightFlushInterval")
    if bool(kds.tls_cert_file) != bool(kds.tls_key_file):
        missing = "tlsKeyFile" if kds.tls_cert_file else "tlsCertFile"
        raise ValueError(f"{where}.{missing}: cannot be empty when the other of the pair is set")
    if kds.tls_min_version not in _TLS_VERSIONS:
        raise ValueError(
            f"{where}.tlsMinVersion: must be one of {', '.join(_TLS_VERSIONS)}, "
            f"got {kds.tls_min_version!r}"
        )
    if kds.tls_max_version and kds.tls_max_version not in _TLS_VERSIONS:
        raise ValueError(
            f"{where}.tlsMaxVersion: must be empty or one of {', '.join(_TLS_VERSIONS)}, "
            f"got {kds.tls_max_version!r}"
        )
    if kds.max_msg_size < 1:
        raise ValueError(f"{where}.maxMsgSize: must be a positive number of bytes")
    health = f"{where}.zoneHealthCheck"
    if (parsed[f"{health}.pollInterval"] > 0) != (parsed[f"{health}.timeout"] > 0):
        raise ValueError(f"{health}: timeout and pollInterval must both be either set or unset")


def valid_zone_name(name: str) -> str | None:
    """Why ``name`` cannot name a zone, or None (Kuma: a DNS name of at most 63 characters)."""
    if not name:
        return "is mandatory in zone mode"
    if len(name) > 63:
        return "cannot be longer than 63 characters"
    if not all(_DNS_LABEL.match(label) for label in name.split(".")):
        return f"{name!r} has to be a valid DNS name"
    return None


def _check_zone(zone: ZoneSettings, parsed: dict[str, float]) -> None:
    reason = valid_zone_name(zone.name)
    if reason is not None:
        raise ValueError(f"multizone.zone.name: {reason}")
    if not zone.global_address:
        return
    where = "multizone.zone.globalAddress"
    try:
        address = urlsplit(zone.global_address)
        port = address.port
    except ValueError as exc:
        raise ValueError(f"{where}: cannot parse {zone.global_address!r}: {exc}") from None
    if address.scheme not in ("grpc", "grpcs"):
        raise ValueError(
            f"{where}: unsupported scheme {address.scheme!r}, use grpc or grpcs "
            "(e.g. grpcs://global-cp:5685)"
        )
    if not address.hostname or port is None:
        raise ValueError(f"{where}: must name a host and a port (e.g. grpcs://global-cp:5685)")
    kds = "multizone.zone.kds"
    if address.scheme == "grpcs" and zone.kds.root_ca_file:
        _check_root_ca(f"{kds}.rootCaFile", Path(zone.kds.root_ca_file))
    _positive(parsed, f"{kds}.refreshInterval")
    if zone.kds.max_msg_size < 1:
        raise ValueError(f"{kds}.maxMsgSize: must be a positive number of bytes")


def _check_root_ca(key: str, path: Path) -> None:
    try:
        pem = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc}") from None
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError):
        raise ValueError(f"{key}: {path} holds no PEM certificate") from None
