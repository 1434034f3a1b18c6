"""kuma-cp's ``monitoringAssignmentServer`` section (Kuma's ``pkg/config/mads``; env
``KUMA_MONITORING_ASSIGNMENT_SERVER_*``).

As in Kuma: port 5676, MADS ``v1`` only, a 30 s default fetch timeout, plain HTTP unless
``tlsEnabled`` (the certificate: ``tlsCertFile``/``tlsKeyFile``, else ``general``'s, else
kuma-cp's generated one), no authentication; a global control plane serves no MADS.
``interface`` is ours (Kuma listens on every interface, which stays the default: Prometheus
usually runs on another host). ``assignmentRefreshInterval`` is accepted and checked but
unused: Kuma regenerates assignments on that tick, here they follow the store's events.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from .config_base import Section

API_V1 = "v1"


class MonitoringAssignmentServer(Section):
    port: int = 5676
    interface: str = "0.0.0.0"
    api_versions: list[str] = msgspec.field(default_factory=lambda: [API_V1])
    assignment_refresh_interval: str = "1s"
    default_fetch_timeout: str = "30s"
    tls_enabled: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""


def check_mads(config: MonitoringAssignmentServer, duration: Callable[[str], float]) -> None:
    """Kuma's ``Validate``; ValueError naming the key."""
    key = "monitoringAssignmentServer"
    if not 0 <= config.port <= 65535:
        raise ValueError(f"{key}.port: port must be in the range [0, 65535], got {config.port}")
    if not config.api_versions:
        raise ValueError(f"{key}.apiVersions: must contain at least one version")
    for version in config.api_versions:
        if version != API_V1:
            raise ValueError(f"{key}.apiVersions: contains invalid version {version}")
    for name, text in (
        ("assignmentRefreshInterval", config.assignment_refresh_interval),
        ("defaultFetchTimeout", config.default_fetch_timeout),
    ):
        try:
            duration(text)
        except ValueError as exc:
            raise ValueError(f"{key}.{name}: {exc}") from None
    if duration(config.assignment_refresh_interval) <= 0:
        raise ValueError(f"{key}.assignmentRefreshInterval: must be positive")
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        raise ValueError(f"{key}.tlsCertFile and tlsKeyFile: set both or neither")
