"""Install and uninstall, through ``iptables-restore --noflush``, one document per IP family.

What counts as installed is read back from ``iptables-save``: the ``KUMA_MESH_*`` chains and
the rules of built-in chains that carry :data:`rules.MARKER`. So:

* install is idempotent: one document removes the marked rules already there, re-declares
  (creates or empties) the chains and adds the rules: applied in one transaction per table;
* uninstall deletes exactly the marked rules and the chains, nothing else;
* if the IPv6 document fails after IPv4's was applied, IPv4's is taken back out;
* with IPv6 rules, ::6 goes on lo (see :mod:`.loopback`), and comes off again at uninstall if
  install put it there.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from . import loopback, rules, system
from .config import TransparentProxyConfig
from .rules import Family

_TABLE = re.compile(r"^\*(\S+)$")
_MARKED = re.compile(r'--comment "?' + re.escape(rules.MARKER) + r'"?(\s|$)')


@dataclass
class Installed:
    """What ``iptables-save`` shows of an installation, per table."""

    #: table → saved ``-A <chain> ...`` lines of marked rules in built-in chains.
    marked: dict[str, list[str]] = field(default_factory=dict)
    #: table → our chains that exist.
    chains: dict[str, list[str]] = field(default_factory=dict)

    def empty(self) -> bool:
        return not any(self.marked.values()) and not any(self.chains.values())


def installed(saved: str) -> Installed:
    found = Installed()
    table = ""
    for line in saved.splitlines():
        match = _TABLE.match(line)
        if match:
            table = match.group(1)
        elif line.startswith(":") and line[1:].split(" ", 1)[0] in rules.CHAINS:
            found.chains.setdefault(table, []).append(line[1:].split(" ", 1)[0])
        elif line.startswith("-A ") and _MARKED.search(line):
            chain = line.split(" ", 2)[1]
            if chain not in rules.CHAINS:
                found.marked.setdefault(table, []).append(line)
    return found


def _deletions(lines: Sequence[str]) -> list[str]:
    return ["-D " + line[len("-A ") :] for line in lines]


def removal_document(saved: str) -> str:
    """What takes an installation out of a host whose rules are ``saved`` ("" if none)."""
    found = installed(saved)
    out: list[str] = []
    for table in sorted(set(found.marked) | set(found.chains)):
        chains = found.chains.get(table, [])
        out.append(f"*{table}")
        out += _deletions(found.marked.get(table, []))
        out += [f"-F {chain}" for chain in chains]  # chains jump to each other: empty all first
        out += [f"-X {chain}" for chain in chains]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def install_document(config: TransparentProxyConfig, family: Family, saved: str) -> str:
    """One document that replaces whatever installation ``saved`` shows with ``config``'s."""
    found = installed(saved)
    tables = {t.name: t for t in rules.build(config, family)}
    out: list[str] = []
    for name in sorted(set(tables) | set(found.marked), key=lambda n: (n not in tables, n)):
        new = tables.get(name)
        lines = rules.render([new]).splitlines() if new else [f"*{name}", "COMMIT"]
        # After the table line and the chain declarations: the old marked rules go first.
        at = 1 + (len(new.chains) if new else 0)
        lines[at:at] = _deletions(found.marked.get(name, []))
        out += lines
    return "\n".join(out) + "\n"


def _family_config(
    config: TransparentProxyConfig, tools: system.Tools, err: IO[str]
) -> TransparentProxyConfig:
    if config.dns_enabled and config.conntrack_zone_split and not system.conntrack_usable(tools):
        err.write(
            f"# [WARNING] {tools.iptables} has no conntrack extension: the DNS conntrack "
            "zone rules are left out\n"
        )
        return dataclasses.replace(config, conntrack_zone_split=False)
    return config


def dry_run_text(config: TransparentProxyConfig, families: Sequence[Family]) -> str:
    """The rules each family would get on a host without an installation."""
    parts = []
    for family in families:
        parts.append(f"# {family.name}\n" + rules.render(rules.build(config, family)))
    return "\n".join(parts)


def install(
    config: TransparentProxyConfig,
    families: Sequence[Family],
    *,
    out: IO[str],
    err: IO[str],
    verbose: bool = False,
) -> None:
    applied: list[system.Tools] = []
    for family in families:
        tools = system.require_tools(family)
        document = install_document(_family_config(config, tools, err), family, system.save(tools))
        if verbose:
            out.write(f"# {family.name} ({tools.restore}, {tools.mode()} backend)\n{document}")
        try:
            system.restore(tools, document)
        except system.IptablesError:
            for done in applied:
                undo = removal_document(system.save(done))
                if undo:
                    system.restore(done, undo)
            raise
        applied.append(tools)
    if any(family.ipv6 for family in families) and loopback.ensure() and verbose:
        out.write(f"# added {loopback.ADDRESS}/128 to lo (inbound passthrough source)\n")


def uninstall(*, out: IO[str], dry_run: bool = False, verbose: bool = False) -> bool:
    """Remove the installation from every family whose tools exist; False if none was found."""
    found_any = False
    for family in (rules.IPV4, rules.IPV6):
        tools = system.find_tools(family)
        if tools is None or (family.ipv6 and not system.nat_usable(tools)):
            continue
        document = removal_document(system.save(tools))
        if not document:
            continue
        found_any = True
        if dry_run or verbose:
            out.write(f"# {family.name} ({tools.restore}, {tools.mode()} backend)\n{document}")
        if not dry_run:
            system.restore(tools, document)
    if loopback.added_by_install():
        found_any = True
        if dry_run or verbose:
            out.write(f"# remove {loopback.ADDRESS}/128 from lo (added by install)\n")
        if not dry_run:
            loopback.remove()
    return found_any
