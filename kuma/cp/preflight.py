"""Checks made before kuma-cp announces anything, so that every configuration mistake has one
shape (``kuma-cp: configuration error: <key>: <reason>``, exit status 2): a store type no
plugin provides, and a port another process holds. Each names the key to change."""

from __future__ import annotations

import socket

from kuma.store import StoreConfigError
from kuma.store.registry import store_factory

from .config import ConfigError, CpConfig


def preflight(config: CpConfig) -> None:
    try:
        store_factory(config.store.type)
    except StoreConfigError as exc:
        raise ConfigError(str(exc)) from None
    listeners: list[tuple[str, str, int]] = [
        ("dpServer.port", config.dp_server.interface, config.dp_server.port),
        ("apiServer.http.port", config.api_server.http.interface, config.api_server.http.port),
    ]
    if not config.is_global:
        mads = config.monitoring_assignment_server
        listeners.append(("monitoringAssignmentServer.port", mads.interface, mads.port))
    for key, interface, port in listeners:
        if port:
            _check_free(key, interface, port)


def _check_free(key: str, interface: str, port: int) -> None:
    """Bind and release the port as the servers will (SO_REUSEADDR, like asyncio's)."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((interface, port))
    except OSError as exc:
        raise ConfigError(
            f"{key}: cannot listen on {interface}:{port}: {exc.strerror or exc}"
        ) from None
