"""``kumactl install/uninstall transparent-proxy`` against real iptables, in namespaces made by
the test (root): exact uninstall, idempotent install, dry runs, both IP families."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kuma.tproxy import rules
from tests.fixtures.netns import Netns, needs_netns, veth

pytestmark = [needs_netns, pytest.mark.netns]

KUMACTL = str(Path(sys.executable).with_name("kumactl"))
INSTALL = (KUMACTL, "install", "transparent-proxy", "--kuma-dp-uid", "5678")

#: What a host may already have: rules of its own in the tables the install touches.
HOST_RULES_V4 = """*raw
-A PREROUTING -p udp --dport 4789 -j NOTRACK
COMMIT
*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT -d 10.77.0.1/32 -p tcp -j DNAT --to-destination 10.77.0.2
-A POSTROUTING -s 172.17.0.0/16 -j MASQUERADE
COMMIT
"""
HOST_RULES_V6 = """*raw
-A PREROUTING -p udp --dport 4789 -j NOTRACK
COMMIT
*nat
-A OUTPUT -d fd77::1/128 -p tcp -j RETURN
COMMIT
"""


def _dual_stack(make: Callable[[], Netns]) -> Netns:
    """A namespace with IPv4 and a (non-loopback) IPv6 address: a dual-stack VM."""
    vm, peer = make(), make()
    veth(vm, "10.80.0.2", peer, "10.80.0.1")
    vm.run("ip", "addr", "add", "fd80::2/64", "dev", _first_veth(vm), "nodad")
    return vm


def _first_veth(ns: Netns) -> str:
    links = ns.run("ip", "-o", "link", "show").stdout
    return next(m.group(1) for m in re.finditer(r"^\d+: (va\w+)@", links, re.M))


def _has_passthrough_v6(vm: Netns) -> bool:
    return "inet6 ::6/128 " in vm.run("ip", "-6", "-o", "addr", "show", "dev", "lo").stdout


def _host_rules(vm: Netns) -> None:
    vm.run("iptables-restore", "--noflush", input=HOST_RULES_V4)
    vm.run("ip6tables-restore", "--noflush", input=HOST_RULES_V6)


def _saves(vm: Netns) -> tuple[str, str]:
    return vm.save("iptables-save"), vm.save("ip6tables-save")


def test_uninstall_restores_the_rules_exactly(netns_factory: Callable[[], Netns]) -> None:
    vm = _dual_stack(netns_factory)
    _host_rules(vm)
    vm.set_resolv_conf("nameserver 10.80.0.1\nnameserver fd80::1\n")
    before = _saves(vm)

    vm.run(
        *INSTALL,
        "--redirect-dns",
        "--exclude-inbound-ports",
        "22",
        "--exclude-outbound-ips",
        "10.99.0.0/16,fd99::/16",
    )
    v4, v6 = _saves(vm)
    for saved, ns_ip, excluded in (
        (v4, "10.80.0.1/32", "10.99.0.0/16"),
        (v6, "fd80::1/128", "fd99::/16"),
    ):
        for chain in rules.CHAINS:
            assert f":{chain} -" in saved
        assert f"-A OUTPUT -d {ns_ip} -p udp -m udp --dport 53" in saved
        assert f"-A KUMA_MESH_OUTBOUND -d {excluded} -j RETURN" in saved
        assert "-A KUMA_MESH_INBOUND -p tcp -m tcp --dport 22 -j RETURN" in saved
    # IPv6 inbound passthrough connections come from ::6: it is on lo now.
    assert _has_passthrough_v6(vm)
    # The host's own rules are still there, in their places.
    assert "-A PREROUTING -p udp -m udp --dport 4789 -j NOTRACK" in v4
    assert "-A POSTROUTING -s 172.17.0.0/16 -j MASQUERADE" in v4

    out = vm.run(KUMACTL, "uninstall", "transparent-proxy").stdout
    assert "cleaned up successfully" in out
    assert _saves(vm) == before
    assert not _has_passthrough_v6(vm)
    # Nothing left to remove: a second uninstall says so and changes nothing.
    assert "nothing to remove" in vm.run(KUMACTL, "uninstall", "transparent-proxy").stdout
    assert _saves(vm) == before


def test_a_passthrough_address_the_host_had_stays(netns_factory: Callable[[], Netns]) -> None:
    vm = _dual_stack(netns_factory)
    vm.run("ip", "-6", "addr", "add", "::6/128", "dev", "lo")
    vm.run(*INSTALL)
    vm.run(KUMACTL, "uninstall", "transparent-proxy")
    assert _has_passthrough_v6(vm)
    # ... and one that install added is removed only in the namespace it was added in.
    other = _dual_stack(netns_factory)
    other.run(*INSTALL)
    vm.run("ip", "-6", "addr", "del", "::6/128", "dev", "lo")
    vm.run(*INSTALL)
    other.run(KUMACTL, "uninstall", "transparent-proxy")
    assert _has_passthrough_v6(vm)
    assert not _has_passthrough_v6(other)
    vm.run(KUMACTL, "uninstall", "transparent-proxy")
    assert not _has_passthrough_v6(vm)


def test_install_twice_is_harmless(netns_factory: Callable[[], Netns]) -> None:
    vm = _dual_stack(netns_factory)
    _host_rules(vm)
    vm.run(*INSTALL, "--redirect-all-dns-traffic")
    once = _saves(vm)
    vm.run(*INSTALL, "--redirect-all-dns-traffic")
    assert _saves(vm) == once
    assert len(re.findall(r"-j KUMA_MESH_OUTBOUND$", once[0], re.M)) == 1
    # A changed install replaces the first one instead of adding to it.
    vm.run(*INSTALL, "--redirect-outbound-port", "16001")
    changed = _saves(vm)
    assert "--to-ports 16001" in changed[0]
    assert "--to-ports 15001" not in changed[0]
    assert "--dport 53" not in changed[0]  # no DNS this time: the old DNS rules are gone
    assert len(re.findall(r"-j KUMA_MESH_OUTBOUND$", changed[0], re.M)) == 1


def test_dry_runs_change_nothing(netns_factory: Callable[[], Netns]) -> None:
    vm = _dual_stack(netns_factory)
    _host_rules(vm)
    before = _saves(vm)
    printed = vm.run(*INSTALL, "--redirect-all-dns-traffic", "--dry-run").stdout
    assert "# IPv4\n*raw" in printed
    assert "# IPv6\n" in printed
    assert "-A KUMA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in printed
    assert _saves(vm) == before

    vm.run(*INSTALL)
    installed = _saves(vm)
    printed = vm.run(KUMACTL, "uninstall", "transparent-proxy", "--dry-run").stdout
    assert "-X KUMA_MESH_OUTBOUND" in printed
    assert _saves(vm) == installed


def test_ipv4_mode_leaves_ip6tables_alone(netns_factory: Callable[[], Netns]) -> None:
    vm = _dual_stack(netns_factory)
    _host_rules(vm)
    v6_before = vm.save("ip6tables-save")
    vm.run(*INSTALL, "--ip-family-mode", "ipv4")
    assert "KUMA_MESH" in vm.save("iptables-save")
    assert vm.save("ip6tables-save") == v6_before


def test_fresh_namespace_keeps_only_empty_tables(netns_factory: Callable[[], Netns]) -> None:
    """On a host with no rules at all, uninstall leaves no rule and no chain of its own; with
    the nf_tables backend the tables iptables created stay, empty, with ACCEPT policies."""
    vm = netns_factory()
    vm.run(*INSTALL, "--redirect-all-dns-traffic")
    vm.run(KUMACTL, "uninstall", "transparent-proxy")
    for line in vm.save("iptables-save").splitlines():
        assert line.startswith(("*", "COMMIT")) or re.fullmatch(r":[A-Z]+ ACCEPT", line), line


def test_bad_flags_are_reported(netns_factory: Callable[[], Netns]) -> None:
    vm = netns_factory()
    done = vm.run(*INSTALL, "--exclude-outbound-ports", "80,http", check=False)
    assert done.returncode == 1
    assert "Error: --exclude-outbound-ports: 'http' is not a port number" in done.stderr
    assert vm.save("iptables-save") == ""


def test_the_legacy_backend(netns_factory: Callable[[], Netns], tmp_path: Path) -> None:
    """On a host whose ``iptables`` is iptables-legacy, the same install and exact uninstall go
    through the legacy tools (and leave the nf_tables ruleset alone)."""
    legacy = tmp_path / "legacy-bin"
    legacy.mkdir()
    for family in ("iptables", "ip6tables"):
        for suffix in ("", "-save", "-restore"):
            target = Path("/usr/sbin") / f"{family}-legacy{suffix}"
            if not target.exists():
                pytest.skip(f"no {target} (Debian's iptables package has it)")
            (legacy / f"{family}{suffix}").symlink_to(target)
    env = {"PATH": f"{legacy}:{os.environ.get('PATH', '')}"}
    vm = _dual_stack(netns_factory)
    vm.run("iptables-legacy-restore", "--noflush", input=HOST_RULES_V4)
    vm.run("ip6tables-legacy-restore", "--noflush", input=HOST_RULES_V6)
    before = vm.save("iptables-legacy-save"), vm.save("ip6tables-legacy-save")
    nft_before = vm.save("iptables-nft-save")

    out = vm.run(*INSTALL, "--redirect-all-dns-traffic", "--verbose", env=env).stdout
    assert "legacy backend" in out
    installed = vm.save("iptables-legacy-save"), vm.save("ip6tables-legacy-save")
    assert all(":KUMA_MESH_OUTBOUND -" in saved for saved in installed)
    vm.run(*INSTALL, "--redirect-all-dns-traffic", env=env)
    assert (vm.save("iptables-legacy-save"), vm.save("ip6tables-legacy-save")) == installed
    assert vm.save("iptables-nft-save") == nft_before

    vm.run(KUMACTL, "uninstall", "transparent-proxy", env=env)
    assert (vm.save("iptables-legacy-save"), vm.save("ip6tables-legacy-save")) == before


def test_only_root_changes_rules(netns_factory: Callable[[], Netns]) -> None:
    vm = netns_factory()
    as_user = ("setpriv", "--reuid=5678", "--regid=5678", "--clear-groups")
    done = vm.run(*as_user, *INSTALL, check=False)
    assert done.returncode == 1
    assert "changing iptables needs root" in done.stderr
    # A dry run needs no privileges.
    assert "KUMA_MESH_OUTBOUND" in vm.run(*as_user, *INSTALL, "--dry-run").stdout
