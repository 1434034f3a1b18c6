"""The ``kuma:dns`` listener: Kuma's shape, which names a proxy gets, and a real Envoy that
accepts it (``--mode validate``) and answers mesh names from it."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.filters.udp.dns_filter.v3 import dns_filter_pb2
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

from kuma.dp.envoy import find_envoy
from kuma.xds.generate import StaticMeshView, generate_proxy, names, outbounds_of, types
from kuma.xds.generate.dns import dns_listener, ipv4_mapped, proxy_dns_listener, vip_names
from tests.fixtures.envoy import eventually, free_port
from tests.fixtures.processes import ManagedProcess

from .test_generate import CASES, MESH, VIPS, dataplane, to_plain


def _proxy_listener(case: str, dns_port: int = 15053) -> dict[str, object] | None:
    proxy = dataplane(CASES[case][0])
    view = StaticMeshView([*MESH, proxy], mesh=CASES[case][1], vips=VIPS)
    listeners = generate_proxy(proxy, view, 9901, dns_port=dns_port)[types.LISTENER]
    listener = listeners.get(names.DNS_LISTENER)
    return None if listener is None else to_plain(listener)


def _table(listener: dict[str, object]) -> dict[str, list[str]]:
    config = listener["listenerFilters"][0]["typedConfig"]  # type: ignore[index]
    return {
        entry["name"]: entry["endpoint"]["addressList"]["address"]
        for entry in config["serverConfig"]["inlineDnsTable"]["virtualDomains"]
    }


def test_kumas_shape() -> None:
    listener = to_plain(
        dns_listener(
            53001,
            [("httpbin", "240.0.0.1"), ("backend_test-ns_svc_8080", "240.0.0.0")],
            ipv6=False,
            answer_ipv6=True,
        )
    )
    filter_config = listener["listenerFilters"][0]
    assert listener["name"] == names.DNS_LISTENER == "kuma:dns"
    assert listener["address"] == {
        "socketAddress": {"address": "127.0.0.1", "portValue": 53001, "protocol": "UDP"}
    }
    assert listener["enableReusePort"] is True
    assert listener["trafficDirection"] == "INBOUND"
    assert filter_config["name"] == "envoy.filters.udp.dns_filter"
    config = filter_config["typedConfig"]
    assert config["statPrefix"] == "kuma_dns"
    # Kuma's dns golden (pkg/xds/generator/testdata/dns/1-envoy-config.golden.yaml).
    assert config["serverConfig"]["inlineDnsTable"]["virtualDomains"] == [
        {
            "name": name,
            "endpoint": {"addressList": {"address": addresses}},
            "answerTtl": "30s",
        }
        for name, addresses in [
            ("backend.test-ns.svc.8080.mesh", ["240.0.0.0", "::ffff:f000:0"]),
            ("backend_test-ns_svc_8080.mesh", ["240.0.0.0", "::ffff:f000:0"]),
            ("httpbin.mesh", ["240.0.0.1", "::ffff:f000:1"]),
        ]
    ]
    # Names that are not in the table go to the host's resolvers.
    resolver = config["clientConfig"]["typedDnsResolverConfig"]
    assert resolver["name"] == "envoy.network.dns_resolver.cares"
    assert "resolvers" not in resolver["typedConfig"]
    assert config["clientConfig"]["maxPendingLookups"] == "256"


def test_names_and_mapping() -> None:
    assert vip_names("backend") == ["backend.mesh"]
    assert vip_names("a_b", "kuma") == ["a_b.kuma", "a.b.kuma"]
    assert ipv4_mapped("240.0.1.2") == "::ffff:f000:102"
    assert ipv4_mapped("fd00::1") == "fd00::1"


def test_a_proxy_gets_the_names_of_its_vip_outbounds() -> None:
    reachable = _proxy_listener("transparent-reachable")
    assert reachable is not None
    # reachableServices [api, db, rpc, zonal]: zonal has no VIP; IPv4 only (no ipFamilyMode
    # and no IPv6 port) yet AAAA answers, as Kuma (only ipFamilyMode IPv4 turns them off).
    assert _table(reachable) == {
        "api.mesh": ["240.0.0.1", "::ffff:f000:1"],
        "db.mesh": ["240.0.0.2", "::ffff:f000:2"],
        "rpc.mesh": ["240.0.0.4", "::ffff:f000:4"],
    }
    assert "additionalAddresses" not in reachable
    every = _proxy_listener("transparent-all")
    assert every is not None
    assert set(_table(every)) == {f"{s}.mesh" for s in VIPS}
    # Dual stack: ip6tables redirects DNS to [::1], so Envoy listens there too.
    assert every["additionalAddresses"] == [
        {"address": {"socketAddress": {"address": "::1", "portValue": 15053, "protocol": "UDP"}}}
    ]


def test_no_dns_listener_without_dns_port_or_transparent_proxying() -> None:
    assert _proxy_listener("transparent-all", dns_port=0) is None
    assert _proxy_listener("profile-source") is None


def test_ipv4_only_proxy_gets_no_aaaa() -> None:
    proxy = dataplane(
        """
        name: v4
        networking:
          address: 10.0.0.1
          inbound: [{port: 80, tags: {kuma.io/service: web}}]
          transparentProxying:
            redirectPortInbound: 15006
            redirectPortOutbound: 15001
            ipFamilyMode: IPv4
        """
    )
    view = StaticMeshView([proxy], vips={"web": "240.0.0.9"})
    listener = proxy_dns_listener(proxy, outbounds_of(proxy, view), view.vip, 53)
    assert listener is not None
    assert _table(to_plain(listener)) == {"web.mesh": ["240.0.0.9"]}


def _bootstrap(port: int, admin_path: Path | None = None) -> bootstrap_pb2.Bootstrap:
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.node.id, bootstrap.node.cluster = "default.dns", "dns"
    admin = bootstrap.admin.address.socket_address
    admin.address, admin.port_value = "127.0.0.1", 0
    listener = dns_listener(port, [("backend", "240.0.0.7"), ("my_svc", "240.0.0.8")], ipv6=True)
    bootstrap.static_resources.listeners.append(listener)
    return bootstrap


@pytest.mark.envoy
def test_envoy_accepts_the_listener(tmp_path: Path) -> None:
    path = tmp_path / "dns.json"
    path.write_text(json_format.MessageToJson(_bootstrap(15053)))
    result = subprocess.run(
        [
            find_envoy(None),
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warning",
            "-c",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Deprecated field" not in output, output


def test_envoy_rejects_a_broken_filter(tmp_path: Path) -> None:
    """The validation has teeth: an empty stat prefix is refused."""
    bootstrap = _bootstrap(15053)
    typed = bootstrap.static_resources.listeners[0].listener_filters[0].typed_config
    config = dns_filter_pb2.DnsFilterConfig()
    typed.Unpack(config)
    config.stat_prefix = ""
    typed.Pack(config)
    path = tmp_path / "dns.json"
    path.write_text(json_format.MessageToJson(bootstrap))
    result = subprocess.run(
        [find_envoy(None), "--mode", "validate", "--disable-hot-restart", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "StatPrefix" in result.stdout + result.stderr


def _ask(port: int, name: str, kind: str, family: int = socket.AF_INET) -> dns.message.Message:
    query = dns.message.make_query(name, kind)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(query.to_wire(), ("127.0.0.1" if family == socket.AF_INET else "::1", port))
        return dns.message.from_wire(sock.recv(4096))


@pytest.mark.envoy
def test_a_running_envoy_answers_mesh_names(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "dns.json"
    path.write_text(json_format.MessageToJson(_bootstrap(port)))
    envoy = ManagedProcess(
        [
            find_envoy(None),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "warning",
            "-c",
            str(path),
        ]
    )
    try:
        answer = eventually(lambda: _ask(port, "backend.mesh", "A"), "an answer from kuma:dns")
        assert [r.to_text() for r in answer.answer[0]] == ["240.0.0.7"]
        assert answer.answer[0].ttl == 30
        aaaa = _ask(port, "my.svc.mesh", "AAAA", socket.AF_INET6)
        assert [r.to_text() for r in aaaa.answer[0]] == ["::ffff:240.0.0.8"]
    finally:
        assert envoy.stop() == 0, envoy.output()
