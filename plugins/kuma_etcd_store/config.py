"""The ``store.etcd`` configuration section: parsing, validation and the gRPC channel options."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kuma.store import StoreConfigError

SECTION = "store.etcd"


@dataclass(frozen=True)
class EtcdOptions:
    #: (host, port) of every etcd member to try; gRPC fails over between them.
    endpoints: tuple[tuple[str, int], ...]
    #: Every key lives under ``<prefix>/``; several control planes may share one etcd.
    prefix: str = "/kuma"
    #: Deadline of every unary call (get, list, writes, the watch's re-list).
    request_timeout: float = 5.0
    #: Interval of gRPC keepalive pings on open streams. etcd refuses pings more frequent than
    #: its ``--grpc-keepalive-min-time`` (5 s by default) with GOAWAY ``too_many_pings``, hence
    #: a default just above it.
    keepalive_time: float = 6.0
    #: A ping unanswered for this long closes the connection: this is what notices a frozen
    #: etcd (SIGSTOP, a hung VM), whose TCP connection otherwise looks healthy for minutes.
    keepalive_timeout: float = 3.0
    #: Upper bound of the watch's reconnect backoff (it starts at a tenth of a second).
    max_retry_backoff: float = 2.0
    #: Keys per range request when loading a snapshot (keeps responses well under 4 MiB).
    page_size: int = 1000

    @property
    def grpc_target(self) -> tuple[str, int]:
        """(host, port) for aetcd, which formats the gRPC target as ``host:port``.

        Several IP endpoints become one ``ipv4:``/``ipv6:`` target listing every address (the
        gRPC resolver syntax), so gRPC's pick_first policy fails over between members.
        """
        if len(self.endpoints) == 1:
            return self.endpoints[0]
        scheme = "ipv6" if ":" in self.endpoints[0][0] else "ipv4"
        addresses = [_address(host, port) for host, port in self.endpoints]
        # aetcd appends ":<port>" itself, so the last port goes through the port argument.
        head = ",".join(addresses[:-1])
        last_host, last_port = self.endpoints[-1]
        return f"{scheme}:{head},{_bracket(last_host)}", last_port

    def channel_options(self) -> dict[str, Any]:
        return {
            "grpc.keepalive_time_ms": int(self.keepalive_time * 1000),
            "grpc.keepalive_timeout_ms": int(self.keepalive_timeout * 1000),
            # gRPC core waits 60 s for a ping ack by default, whatever keepalive_timeout says.
            "grpc.http2.ping_timeout_ms": int(self.keepalive_timeout * 1000),
            # Without this, gRPC stops pinging after two pings with no data in between: an idle
            # watch (no changes for a while) would lose its frozen-etcd detection.
            "grpc.http2.max_pings_without_data": 0,
            # etcd's enforcement policy forbids pings on a connection without streams.
            "grpc.keepalive_permit_without_calls": 0,
            # Reconnect promptly once etcd is back (the default backoff grows to 2 minutes).
            "grpc.initial_reconnect_backoff_ms": 100,
            "grpc.min_reconnect_backoff_ms": 100,
            "grpc.max_reconnect_backoff_ms": int(self.max_retry_backoff * 1000),
            "grpc.max_receive_message_length": 64 * 1024 * 1024,
        }


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _address(host: str, port: int) -> str:
    return f"{_bracket(host)}:{port}"


def _endpoint(value: object) -> tuple[str, int]:
    where = f"{SECTION}.endpoints"
    if not isinstance(value, str):
        raise StoreConfigError(f"{where}: expected URLs like http://127.0.0.1:2379, got {value!r}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise StoreConfigError(f"{where}: {value!r} is not a URL: {exc}") from None
    if parts.scheme == "https":
        raise StoreConfigError(f"{where}: {value!r}: TLS (https) is not supported yet")
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise StoreConfigError(f"{where}: {value!r} is not a URL like http://127.0.0.1:2379")
    return parts.hostname, port or 2379


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _endpoints(value: object) -> tuple[tuple[str, int], ...]:
    where = f"{SECTION}.endpoints"
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise StoreConfigError(f"{where}: expected a non-empty list of URLs, got {value!r}")
    endpoints = tuple(_endpoint(item) for item in value)
    if len(endpoints) > 1:
        hosts = [host for host, _ in endpoints]
        if not all(_is_ip(host) for host in hosts):
            raise StoreConfigError(
                f"{where}: several endpoints must be IP addresses (gRPC fails over between "
                "addresses); otherwise give one DNS name that resolves to every member"
            )
        if len({":" in host for host in hosts}) > 1:
            raise StoreConfigError(f"{where}: do not mix IPv4 and IPv6 endpoints")
    return endpoints


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise StoreConfigError(f"{SECTION}.{name}: expected a positive number, got {value!r}")
    return float(value)


def _prefix(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/") or not value.strip("/"):
        raise StoreConfigError(f"{SECTION}.prefix: expected a key prefix like /kuma, got {value!r}")
    if value.rstrip("/").endswith("-instances"):
        # <p>-instances/ holds the liveness keys of the control planes with prefix <p>.
        raise StoreConfigError(f"{SECTION}.prefix: {value!r}: -instances is reserved at the end")
    if value.rstrip("/").endswith("-insights"):
        # <p>-insights/ holds the DataplaneInsights of the control plane with prefix <p>.
        raise StoreConfigError(f"{SECTION}.prefix: {value!r}: -insights is reserved at the end")
    return value.rstrip("/")


def parse_options(options: Mapping[str, Any]) -> EtcdOptions:
    """Validate ``store.etcd``; every error is a StoreConfigError naming the offending key."""
    known = {
        "endpoints",
        "prefix",
        "request_timeout",
        "keepalive_time",
        "keepalive_timeout",
        "max_retry_backoff",
        "page_size",
    }
    unknown = sorted(set(options) - known)
    if unknown:
        names = ", ".join(f"{SECTION}.{name}" for name in unknown)
        raise StoreConfigError(f"{names}: unknown option (known: {', '.join(sorted(known))})")
    if "endpoints" not in options:
        raise StoreConfigError(f"{SECTION}.endpoints: required (e.g. [http://127.0.0.1:2379])")
    values: dict[str, Any] = {"endpoints": _endpoints(options["endpoints"])}
    if "prefix" in options:
        values["prefix"] = _prefix(options["prefix"])
    for name in ("request_timeout", "keepalive_time", "keepalive_timeout", "max_retry_backoff"):
        if name in options:
            values[name] = _positive(name, options[name])
    if "page_size" in options:
        size = options["page_size"]
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 100_000:
            raise StoreConfigError(f"{SECTION}.page_size: expected 1..100000, got {size!r}")
        values["page_size"] = size
    return EtcdOptions(**values)
