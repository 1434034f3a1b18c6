"""The host side: the system's ``iptables-save``/``iptables-restore`` (nf_tables or legacy
backend, whichever the ``iptables`` alternative points at), IPv6 presence, resolv.conf.

Nothing here talks netlink itself: every change goes through ``*-restore``, which applies a
table's changes in one transaction.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .rules import IPV4, IPV6, Family

#: Where the tools live when PATH lacks the sbin directories (a non-login root shell).
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
#: Seconds iptables waits for the xtables lock (Kuma's ``--wait`` default).
LOCK_WAIT = 5
_TIMEOUT = 60


class IptablesError(RuntimeError):
    """A tool that is missing or failed; the message carries its own error output."""


@dataclass(frozen=True)
class Tools:
    family: Family
    iptables: str
    save: str
    restore: str

    def mode(self) -> str:
        """``nf_tables`` or ``legacy`` (from ``iptables --version``)."""
        version = _run([self.iptables, "--version"]).strip()
        return "nf_tables" if "nf_tables" in version else "legacy"


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in _SBIN:
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def find_tools(family: Family) -> Tools | None:
    """The family's tools, or None when one is missing."""
    base = "ip6tables" if family.ipv6 else "iptables"
    paths = [_which(base), _which(base + "-save"), _which(base + "-restore")]
    if any(p is None for p in paths):
        return None
    iptables, save, restore = (str(p) for p in paths)
    return Tools(family, iptables, save, restore)


def require_tools(family: Family) -> Tools:
    tools = find_tools(family)
    if tools is None:
        base = "ip6tables" if family.ipv6 else "iptables"
        raise IptablesError(
            f"{base}, {base}-save and {base}-restore are needed (Debian/Ubuntu: "
            "apt-get install iptables)"
        )
    return tools


def _run(argv: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except OSError as error:
        raise IptablesError(f"{argv[0]}: {error}") from None
    except subprocess.TimeoutExpired:
        raise IptablesError(f"{' '.join(argv)}: no answer within {_TIMEOUT}s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise IptablesError(f"{' '.join(argv)} failed (exit {done.returncode}): {detail}")
    return done.stdout


def save(tools: Tools, table: str | None = None) -> str:
    argv = [tools.save] + (["-t", table] if table else [])
    return _run(argv)


def restore(tools: Tools, document: str) -> None:
    """Apply ``document`` without flushing anything it does not name."""
    _run([tools.restore, "--noflush", "--wait", str(LOCK_WAIT)], stdin=document)


def nat_usable(tools: Tools) -> bool:
    """Kuma's check for IPv6 (kernels without ``ip6table_nat`` exist): the nat table lists."""
    try:
        save(tools, "nat")
    except IptablesError:
        return False
    return True


def conntrack_usable(tools: Tools) -> bool:
    """Kuma's check before the conntrack-zone rules (WSL2 lacks the extension)."""
    try:
        _run([tools.iptables, "-m", "conntrack", "--help"])
    except IptablesError:
        return False
    return True


def has_local_ipv6(if_inet6: Path = Path("/proc/net/if_inet6")) -> bool:
    """Kuma's ``HasLocalIPv6``: an IPv6 address on an interface other than loopback."""
    try:
        text = if_inet6.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5] != "lo" and fields[0] != "0" * 31 + "1":
            return True
    return False


def families(ip_family_mode: str) -> list[Family]:
    """IPv4 always; IPv6 in ``dualstack`` mode when the host has IPv6 and its nat table."""
    result = [IPV4]
    if ip_family_mode == "dualstack" and has_local_ipv6():
        tools = find_tools(IPV6)
        if tools is not None and nat_usable(tools):
            result.append(IPV6)
    return result
