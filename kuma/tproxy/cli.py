"""``kumactl install transparent-proxy`` and ``kumactl uninstall transparent-proxy``.

The flags are Kuma's (``app/kumactl/cmd/install/install_transparent_proxy.go``) minus its eBPF,
firewalld, vnet and retry options, plus ``--exclude-outbound-ips`` (Kuma 2.8's).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import IO

from . import installer, system
from .config import (
    IP_FAMILY_MODES,
    REDIRECT_DNS_PORT,
    REDIRECT_INBOUND_PORT,
    REDIRECT_OUTBOUND_PORT,
    ConfigError,
    TransparentProxyConfig,
    check,
    nameservers,
    parse_networks,
    parse_port,
    parse_ports,
    resolve_uid,
)
from .loopback import LoopbackError

RESOLV_CONF = Path("/etc/resolv.conf")


class TproxyError(Exception):
    """Reported by kumactl as ``Error: <message>``."""


def add_commands(
    top: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    install = top.add_parser("install", parents=[common], help="install things on this host")
    what = install.add_subparsers(dest="what", required=True, metavar="WHAT")
    tp = what.add_parser(
        "transparent-proxy",
        parents=[common],
        help="redirect this host's traffic through its kuma-dp (iptables; run as root)",
        description="Install iptables rules that redirect this host's traffic to the Envoy of "
        "kuma-dp (run kuma-dp as the --kuma-dp-user), and its DNS to Envoy's DNS port. "
        "Undo with: kumactl uninstall transparent-proxy",
    )
    tp.add_argument("--kuma-dp-user", help="the user that runs kuma-dp")
    tp.add_argument("--kuma-dp-uid", help="the uid of the user that runs kuma-dp")
    tp.add_argument(
        "--redirect-outbound-port",
        default=str(REDIRECT_OUTBOUND_PORT),
        help="Envoy's outbound redirect port, as the Dataplane's "
        "transparentProxying.redirectPortOutbound (default 15001)",
    )
    tp.add_argument(
        "--redirect-inbound-port",
        default=str(REDIRECT_INBOUND_PORT),
        help="Envoy's inbound redirect port, as the Dataplane's "
        "transparentProxying.redirectPortInbound (default 15006)",
    )
    tp.add_argument(
        "--redirect-inbound",
        nargs="?",
        const="true",
        default="true",
        choices=("true", "false"),
        help="redirect inbound traffic to Envoy (false for gateways)",
    )
    tp.add_argument("--exclude-inbound-ports", default="", help="comma-separated ports")
    tp.add_argument("--exclude-outbound-ports", default="", help="comma-separated ports")
    tp.add_argument("--exclude-outbound-ips", default="", help="comma-separated IPs or CIDRs")
    tp.add_argument(
        "--redirect-dns",
        action="store_true",
        help="redirect DNS sent to the nameservers of /etc/resolv.conf to the DNS port",
    )
    tp.add_argument(
        "--redirect-all-dns-traffic",
        action="store_true",
        help="redirect all DNS traffic (UDP port 53) to the DNS port",
    )
    tp.add_argument(
        "--redirect-dns-port",
        default=str(REDIRECT_DNS_PORT),
        help="where DNS goes: kuma-dp's --dns-port (default 15053)",
    )
    tp.add_argument(
        "--skip-dns-conntrack-zone-split",
        action="store_true",
        help="leave out the conntrack zone rules for DNS",
    )
    tp.add_argument(
        "--ip-family-mode",
        default="dualstack",
        choices=IP_FAMILY_MODES,
        help="dualstack: IPv4 and, on a host with IPv6, IPv6 too (default); ipv4: IPv4 only",
    )
    tp.add_argument("--dry-run", action="store_true", help="print the rules, change nothing")
    tp.add_argument("--verbose", action="store_true", help="print what is applied")

    uninstall = top.add_parser("uninstall", parents=[common], help="undo an install")
    undo = uninstall.add_subparsers(dest="what", required=True, metavar="WHAT")
    tp_undo = undo.add_parser(
        "transparent-proxy",
        parents=[common],
        help="remove exactly the rules 'install transparent-proxy' added",
    )
    tp_undo.add_argument("--dry-run", action="store_true", help="print, change nothing")
    tp_undo.add_argument("--verbose", action="store_true", help="print what is applied")


def config_from(
    args: argparse.Namespace, resolv_conf: Path = RESOLV_CONF
) -> TransparentProxyConfig:
    if args.redirect_dns and args.redirect_all_dns_traffic:
        raise ConfigError("one of --redirect-dns or --redirect-all-dns-traffic should be specified")
    servers: tuple[str, ...] = ()
    if args.redirect_dns:
        try:
            servers = nameservers(resolv_conf.read_text())
        except OSError as error:
            raise ConfigError(f"--redirect-dns: cannot read {resolv_conf}: {error}") from None
    config = TransparentProxyConfig(
        uid=resolve_uid(args.kuma_dp_user, args.kuma_dp_uid),
        redirect_outbound_port=parse_port(args.redirect_outbound_port, "--redirect-outbound-port"),
        redirect_inbound_port=parse_port(args.redirect_inbound_port, "--redirect-inbound-port"),
        redirect_inbound=args.redirect_inbound == "true",
        exclude_inbound_ports=parse_ports(args.exclude_inbound_ports, "--exclude-inbound-ports"),
        exclude_outbound_ports=parse_ports(args.exclude_outbound_ports, "--exclude-outbound-ports"),
        exclude_outbound_ips=parse_networks(args.exclude_outbound_ips, "--exclude-outbound-ips"),
        redirect_dns=args.redirect_dns,
        redirect_all_dns_traffic=args.redirect_all_dns_traffic,
        redirect_dns_port=parse_port(args.redirect_dns_port, "--redirect-dns-port"),
        conntrack_zone_split=not args.skip_dns_conntrack_zone_split,
        ip_family_mode=args.ip_family_mode,
        dns_servers=servers,
    )
    check(config)
    return config


def _require_root(dry_run: bool) -> None:
    if dry_run:
        return
    if not sys.platform.startswith("linux"):
        raise TproxyError("transparent proxy will work only on Linux OSes")
    if os.geteuid() != 0:
        raise TproxyError("changing iptables needs root: run it with sudo (or use --dry-run)")


def run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> None:
    """Run ``install``/``uninstall transparent-proxy``; failures raise :class:`TproxyError`."""
    try:
        if args.command == "install":
            config = config_from(args)
            families = system.families(config.ip_family_mode)
            if args.dry_run:
                out.write(installer.dry_run_text(config, families))
                return
            _require_root(False)
            installer.install(config, families, out=out, err=err, verbose=args.verbose)
            out.write(
                "# Transparent proxy set up successfully, you can now run kuma-dp using "
                "transparent-proxy.\n"
            )
        else:
            _require_root(args.dry_run)
            found = installer.uninstall(out=out, dry_run=args.dry_run, verbose=args.verbose)
            if not found:
                out.write("# No transparent proxy rules found: nothing to remove\n")
            elif not args.dry_run:
                out.write("# Transparent proxy cleaned up successfully\n")
    except (ConfigError, system.IptablesError, LoopbackError) as error:
        raise TproxyError(str(error)) from None
