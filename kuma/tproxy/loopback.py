"""The IPv6 inbound-passthrough source address on loopback.

Envoy opens inbound passthrough connections from 127.0.0.6 / ::6 so the rules let them through
(``-s ::6/128 -o lo -j RETURN``). Every 127.x address is local already; ::6 is not, so with
IPv6 rules the install adds ``::6/128`` to ``lo`` (as Kuma does, through ``ip``). To remove
exactly what it added, it leaves a marker in /run (which, like iptables rules, does not survive
a reboot), one per network namespace; uninstall deletes the address only when the marker says
install added it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ADDRESS = "::6"
MARKERS = Path("/run/kuma-py")


class LoopbackError(RuntimeError):
    pass


def _ip(*args: str) -> str:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    done = subprocess.run([ip, *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise LoopbackError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _marker() -> Path:
    # The namespace's inode tells network namespaces apart (they share /run).
    return MARKERS / f"transparent-proxy-ipv6-lo-{os.stat('/proc/self/ns/net').st_ino}"


def present() -> bool:
    return f"inet6 {ADDRESS}/128 " in _ip("-6", "-o", "addr", "show", "dev", "lo")


def ensure() -> bool:
    """Add ::6/128 to lo unless it is there; True if this call added it (and marked it)."""
    if present():
        return False
    _ip("-6", "addr", "add", f"{ADDRESS}/128", "dev", "lo")
    MARKERS.mkdir(parents=True, exist_ok=True)
    _marker().write_text(f"{ADDRESS}/128 on lo, added by kumactl install transparent-proxy\n")
    return True


def added_by_install() -> bool:
    return _marker().exists()


def remove() -> None:
    """Take ::6/128 off lo if install added it."""
    marker = _marker()
    if not marker.exists():
        return
    if present():
        _ip("-6", "addr", "del", f"{ADDRESS}/128", "dev", "lo")
    marker.unlink()
