"""The rules of one IP family, after Kuma v2.7's ``pkg/transparentproxy/iptables/builder``.

nat table (chain names as Kuma's, prefix ``KUMA_``):

* PREROUTING: TCP → ``KUMA_MESH_INBOUND`` → ``KUMA_MESH_INBOUND_REDIRECT`` (REDIRECT to the
  inbound redirect port), except excluded inbound ports.
* OUTPUT, at the top when DNS is redirected: UDP to port 53 from the kuma-dp uid RETURNs (Envoy
  asks the real resolvers), any other UDP to port 53 (all of it, or only to the resolv.conf
  nameservers) is REDIRECTed to the DNS port; appended: TCP → ``KUMA_MESH_OUTBOUND``.
* ``KUMA_MESH_OUTBOUND``, in order: excluded ports and IPs RETURN; connections from the inbound
  passthrough source (127.0.0.6 / ::6) on lo RETURN; kuma-dp's connections over lo to a
  non-loopback address (to the proxy's own inbound) go to the inbound redirect; other users'
  lo traffic RETURNs; the kuma-dp uid RETURNs; traffic to localhost RETURNs; the rest goes to
  ``KUMA_MESH_OUTBOUND_REDIRECT`` (REDIRECT to the outbound redirect port).

One deliberate difference: Kuma REDIRECTs TCP port 53 to its DNS server (CoreDNS serves TCP);
here Envoy's DNS filter answers UDP only, so TCP DNS RETURNs and reaches the real resolver
untouched (clients fall back to TCP only for truncated answers, which ``.mesh`` never gives).

raw table, when DNS is redirected and conntrack is usable: Kuma's conntrack zones (1 for the
kuma-dp uid's DNS and replies from resolvers, 2 for the applications' DNS and the answers of
the DNS port), so the two flows of one query never share a conntrack entry. Kuma matches the
replies of the resolv.conf nameservers with ``-d <nameserver>``; a reply comes *from* the
nameserver, so it is ``-s`` here.

Every rule put into a built-in chain carries the comment :data:`MARKER`: uninstall removes
exactly those and the ``KUMA_MESH_*`` chains, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import TransparentProxyConfig, split_families

PREFIX = "KUMA_"
MESH_INBOUND = PREFIX + "MESH_INBOUND"
MESH_OUTBOUND = PREFIX + "MESH_OUTBOUND"
MESH_INBOUND_REDIRECT = PREFIX + "MESH_INBOUND_REDIRECT"
MESH_OUTBOUND_REDIRECT = PREFIX + "MESH_OUTBOUND_REDIRECT"
#: Every chain an installation creates (all in the nat table).
CHAINS = (MESH_INBOUND, MESH_OUTBOUND, MESH_INBOUND_REDIRECT, MESH_OUTBOUND_REDIRECT)
#: The comment on each rule an installation adds to a built-in chain.
MARKER = "kuma/mesh/transparent/proxy"
DNS_PORT = 53

Spec = tuple[str, ...]


@dataclass
class TableRules:
    """What one table gets: new chains with their rules, rules inserted at the top of
    built-in chains (in this order) and rules appended to built-in chains."""

    name: str
    chains: dict[str, list[Spec]] = field(default_factory=dict)
    inserts: list[tuple[str, Spec]] = field(default_factory=list)
    appends: list[tuple[str, Spec]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.chains or self.inserts or self.appends)


@dataclass(frozen=True)
class Family:
    ipv6: bool
    localhost: str
    passthrough_source: str

    @property
    def name(self) -> str:
        return "IPv6" if self.ipv6 else "IPv4"


IPV4 = Family(False, "127.0.0.1/32", "127.0.0.6/32")
IPV6 = Family(True, "::1/128", "::6/128")


def _marked(spec: Spec) -> Spec:
    """``spec`` with the marker comment before its target (where iptables-save puts it)."""
    at = spec.index("-j")
    return (*spec[:at], "-m", "comment", "--comment", MARKER, *spec[at:])


def _tcp(*extra: str) -> Spec:
    return ("-p", "tcp", *extra)


def _udp_dns(*extra: str) -> Spec:
    return ("-p", "udp", "--dport", str(DNS_PORT), *extra)


def _owner(uid: int, negate: bool = False) -> Spec:
    return (
        ("-m", "owner", "!", "--uid-owner", str(uid))
        if negate
        else (
            "-m",
            "owner",
            "--uid-owner",
            str(uid),
        )
    )


def _redirect(port: int) -> Spec:
    return ("-j", "REDIRECT", "--to-ports", str(port))


def _nameservers(config: TransparentProxyConfig, family: Family) -> list[str]:
    v4, v6 = split_families(config.dns_servers)
    return v6 if family.ipv6 else v4


def _mesh_inbound(config: TransparentProxyConfig) -> list[Spec]:
    if not config.redirect_inbound:
        return [(*_tcp(), "-j", "RETURN")]
    rules: list[Spec] = [
        (*_tcp("--dport", str(port)), "-j", "RETURN") for port in config.exclude_inbound_ports
    ]
    rules.append((*_tcp(), "-j", MESH_INBOUND_REDIRECT))
    return rules


def _mesh_outbound(config: TransparentProxyConfig, family: Family) -> list[Spec]:
    uid = config.uid
    rules: list[Spec] = [
        (*_tcp("--dport", str(port)), "-j", "RETURN") for port in config.exclude_outbound_ports
    ]
    for network in config.exclude_outbound_ips:
        if (network.version == 6) == family.ipv6:
            rules.append(("-d", str(network), "-j", "RETURN"))
    not_dns: Spec = ("!", "--dport", str(DNS_PORT)) if config.dns_enabled else ()
    rules += [
        ("-s", family.passthrough_source, "-o", "lo", "-j", "RETURN"),
        (
            *_tcp(*not_dns),
            "-o",
            "lo",
            "!",
            "-d",
            family.localhost,
            *_owner(uid),
            "-j",
            MESH_INBOUND_REDIRECT,
        ),
        (*_tcp(*not_dns), "-o", "lo", *_owner(uid, negate=True), "-j", "RETURN"),
        (*_owner(uid), "-j", "RETURN"),
    ]
    if config.dns_enabled:
        # TCP DNS goes to the resolver untouched (see the module's docstring).
        if config.redirect_all_dns_traffic:
            rules.append((*_tcp("--dport", str(DNS_PORT)), "-j", "RETURN"))
        else:
            for server in _nameservers(config, family):
                rules.append(("-d", server, *_tcp("--dport", str(DNS_PORT)), "-j", "RETURN"))
    rules.append(("-d", family.localhost, "-j", "RETURN"))
    rules.append(("-j", MESH_OUTBOUND_REDIRECT))
    return rules


def _nat(config: TransparentProxyConfig, family: Family) -> TableRules:
    nat = TableRules("nat")
    nat.chains[MESH_INBOUND] = _mesh_inbound(config)
    nat.chains[MESH_OUTBOUND] = _mesh_outbound(config, family)
    nat.chains[MESH_INBOUND_REDIRECT] = [(*_tcp(), *_redirect(config.redirect_inbound_port))]
    nat.chains[MESH_OUTBOUND_REDIRECT] = [(*_tcp(), *_redirect(config.redirect_outbound_port))]
    if config.dns_enabled:
        nat.inserts.append(("OUTPUT", _marked((*_udp_dns(), *_owner(config.uid), "-j", "RETURN"))))
        dns_redirect = _redirect(config.redirect_dns_port)
        if config.redirect_all_dns_traffic:
            nat.inserts.append(("OUTPUT", _marked((*_udp_dns(), *dns_redirect))))
        else:
            for server in _nameservers(config, family):
                nat.inserts.append(("OUTPUT", _marked(("-d", server, *_udp_dns(), *dns_redirect))))
    nat.appends.append(("PREROUTING", _marked((*_tcp(), "-j", MESH_INBOUND))))
    nat.appends.append(("OUTPUT", _marked((*_tcp(), "-j", MESH_OUTBOUND))))
    return nat


def _raw(config: TransparentProxyConfig, family: Family) -> TableRules:
    raw = TableRules("raw")
    if not config.dns_enabled or not config.conntrack_zone_split:
        return raw
    uid, dns_port = config.uid, str(config.redirect_dns_port)

    def zone(chain: str, zone: str, *spec: str) -> None:
        raw.appends.append((chain, _marked((*spec, "-j", "CT", "--zone", zone))))

    zone("OUTPUT", "1", *_udp_dns(), *_owner(uid))
    zone("OUTPUT", "2", "-p", "udp", "--sport", dns_port, *_owner(uid))
    if config.redirect_all_dns_traffic:
        zone("OUTPUT", "2", *_udp_dns())
        zone("PREROUTING", "1", "-p", "udp", "--sport", str(DNS_PORT))
    else:
        for server in _nameservers(config, family):
            zone("OUTPUT", "2", "-d", server, *_udp_dns())
            zone("PREROUTING", "1", "-s", server, "-p", "udp", "--sport", str(DNS_PORT))
    return raw


def build(config: TransparentProxyConfig, family: Family) -> list[TableRules]:
    """The tables of one family that get rules (raw before nat, as iptables-save orders them)."""
    return [t for t in (_raw(config, family), _nat(config, family)) if not t.empty()]


def render(tables: list[TableRules]) -> str:
    """The rules as an ``iptables-restore --noflush`` document for a host that has none of
    them: declaring a chain creates it (or empties it), rules are inserted and appended."""
    lines: list[str] = []
    for table in tables:
        lines.append(f"*{table.name}")
        lines += [f":{chain} - [0:0]" for chain in table.chains]
        lines += [
            f"-I {chain} {position} {' '.join(spec)}"
            for position, (chain, spec) in _positions(table.inserts)
        ]
        lines += [f"-A {chain} {' '.join(spec)}" for chain, spec in table.appends]
        for chain, specs in table.chains.items():
            lines += [f"-A {chain} {' '.join(spec)}" for spec in specs]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _positions(inserts: list[tuple[str, Spec]]) -> list[tuple[int, tuple[str, Spec]]]:
    """Insert positions 1, 2, ... per chain, so the rules keep their order at the top."""
    counters: dict[str, int] = {}
    result = []
    for chain, spec in inserts:
        counters[chain] = counters.get(chain, 0) + 1
        result.append((counters[chain], (chain, spec)))
    return result
