"""The settings of a transparent-proxy installation: Kuma's ``kumactl install
transparent-proxy`` flags, their defaults, and the checks that turn flag text into values."""

from __future__ import annotations

import ipaddress
import pwd
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

#: Kuma's defaults (``pkg/transparentproxy/config``).
DEFAULT_UID = 5678
REDIRECT_OUTBOUND_PORT = 15001
REDIRECT_INBOUND_PORT = 15006
REDIRECT_DNS_PORT = 15053
IP_FAMILY_MODES = ("dualstack", "ipv4")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A flag value that cannot be used; the message names the flag."""


@dataclass(frozen=True)
class TransparentProxyConfig:
    #: The uid kuma-dp and Envoy run as: their own traffic is never redirected (no loop).
    uid: int = DEFAULT_UID
    redirect_outbound_port: int = REDIRECT_OUTBOUND_PORT
    redirect_inbound_port: int = REDIRECT_INBOUND_PORT
    #: ``--redirect-inbound``: false for gateways (inbound traffic goes straight to them).
    redirect_inbound: bool = True
    exclude_inbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_ips: tuple[Network, ...] = ()
    #: Redirect DNS (UDP port 53) sent to the nameservers of resolv.conf ...
    redirect_dns: bool = False
    #: ... or all DNS, whatever its destination.
    redirect_all_dns_traffic: bool = False
    redirect_dns_port: int = REDIRECT_DNS_PORT
    #: Conntrack zones that keep the application's DNS flows apart from Envoy's upstream ones.
    conntrack_zone_split: bool = True
    ip_family_mode: str = "dualstack"
    dns_servers: tuple[str, ...] = field(default=())

    @property
    def dns_enabled(self) -> bool:
        return self.redirect_dns or self.redirect_all_dns_traffic


def parse_port(text: str, flag: str) -> int:
    try:
        port = int(text.strip())
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{flag}: {port} is not a port number (1-65535)")
    return port


def parse_ports(text: str, flag: str) -> tuple[int, ...]:
    """A comma-separated list of ports (empty: none), kept in order, duplicates dropped."""
    ports: list[int] = []
    for item in text.split(","):
        if item.strip():
            port = parse_port(item, flag)
            if port not in ports:
                ports.append(port)
    return tuple(ports)


def parse_networks(text: str, flag: str) -> tuple[Network, ...]:
    """A comma-separated list of addresses or CIDRs (IPv4 and IPv6 may be mixed)."""
    networks: list[Network] = []
    for item in text.split(","):
        if not item.strip():
            continue
        try:
            network = ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            raise ConfigError(f"{flag}: {item.strip()!r} is not an IP address or CIDR") from None
        if network not in networks:
            networks.append(network)
    return tuple(networks)


def resolve_uid(
    user: str | None,
    uid: str | None,
    lookup: Callable[[str], int] = lambda name: pwd.getpwnam(name).pw_uid,
) -> int:
    """``--kuma-dp-uid`` wins; else the uid of ``--kuma-dp-user`` (a name or a number)."""
    if uid:
        try:
            value = int(uid)
        except ValueError:
            raise ConfigError(f"--kuma-dp-uid: {uid!r} is not a number") from None
        if value < 0:
            raise ConfigError(f"--kuma-dp-uid: {value} is negative")
        return value
    if user:
        if user.isdigit():
            return int(user)
        try:
            return lookup(user)
        except KeyError:
            raise ConfigError(f"--kuma-dp-user: no user named {user!r} on this host") from None
    raise ConfigError("--kuma-dp-user or --kuma-dp-uid should be supplied")


def check(config: TransparentProxyConfig) -> None:
    """Combinations Kuma refuses, and ports that would make Envoy redirect to itself."""
    if config.ip_family_mode not in IP_FAMILY_MODES:
        raise ConfigError(
            f"--ip-family-mode: {config.ip_family_mode!r} is not one of "
            + ", ".join(IP_FAMILY_MODES)
        )
    ports = {
        "--redirect-outbound-port": config.redirect_outbound_port,
        "--redirect-inbound-port": config.redirect_inbound_port,
    }
    if config.dns_enabled:
        ports["--redirect-dns-port"] = config.redirect_dns_port
    seen: dict[int, str] = {}
    for flag, port in ports.items():
        if port in seen:
            raise ConfigError(f"{flag}: {port} is already the {seen[port]}")
        seen[port] = flag


def nameservers(resolv_conf: str) -> tuple[str, ...]:
    """The ``nameserver`` addresses of a resolv.conf text, in order (invalid ones skipped,
    as the C library does)."""
    found: list[str] = []
    for line in resolv_conf.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            address = words[1].split("%", 1)[0]  # an IPv6 zone index is not part of the IP
            try:
                ipaddress.ip_address(address)
            except ValueError:
                continue
            if address not in found:
                found.append(address)
    return tuple(found)


def split_families(addresses: Sequence[str]) -> tuple[list[str], list[str]]:
    v4 = [a for a in addresses if ipaddress.ip_address(a).version == 4]
    v6 = [a for a in addresses if ipaddress.ip_address(a).version == 6]
    return v4, v6
