"""The README's VM walk-through, in network namespaces: real iptables, kuma-cp, kuma-dp and Envoy.

Three namespaces made by the test: ``net`` (the network: kuma-cp, the upstream DNS server and
an outside HTTP server, routing between the VMs), and two VMs, ``web`` and ``backend``, each on
a veth pair to ``net``, with ``kumactl install transparent-proxy`` applied and kuma-dp running
as the excluded uid. The unchanged application calls ``http://backend.mesh/``.

Tests run in file order on one module-wide setup; the last one undoes the installation.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kuma.resources.template import render
from kuma.tls.certs import generate_ca_certificate
from tests.fixtures.envoy import eventually
from tests.fixtures.netns import Netns, needs_netns, veth
from tests.fixtures.processes import ManagedProcess

pytestmark = [needs_netns, pytest.mark.netns, pytest.mark.envoy, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KUMACTL = str(BIN / "kumactl")
UID = 5678
START = 30.0
#: How long a new service may take to resolve before the test gives up (not a target: the
#: measured time is reported in benchmarks/RESULTS.md).
RESOLVE_DEADLINE = 20.0

WEB_IP, BACKEND_IP = "10.81.1.2", "10.81.2.2"
NET_WEB_IP, NET_BACKEND_IP = "10.81.1.1", "10.81.2.1"
#: The VMs are dual stack.
WEB_IP6, BACKEND_IP6 = "fd81:1::2", "fd81:2::2"
NET_WEB_IP6, NET_BACKEND_IP6 = "fd81:1::1", "fd81:2::1"
#: An address outside every VM, excluded from redirection on web.
EXCLUDED_IP = "10.81.9.1"
OUTSIDE_PORT, EXCLUDED_PORT = 9090, 9091
#: Ports of the backend VM outside the mesh: one excluded from redirection, one not.
BACKEND_EXCLUDED_INBOUND, BACKEND_OTHER_INBOUND = 9092, 9093
#: Envoy's admin port in each VM: the template sets none, so kuma-cp's default.
ADMIN_PORT = 9901
#: The Envoy binary itself (the venv's ``envoy`` is a Python launcher, and this venv's Python
#: may live where the kuma-dp user cannot read, e.g. under /root).
ENVOY = Path(sysconfig.get_paths()["purelib"]) / "envoy" / "_bin" / "envoy"

#: The README's template, as a user would use it.
TEMPLATE = (ROOT / "config" / "dp-transparent.yaml").read_text()


def dataplane(name: str, address: str, port: int, service: str) -> str:
    values = {"name": name, "address": address, "port": str(port), "service": service}
    return render(TEMPLATE, values)


def _program(ns: Netns, *argv: str, uid: int | None = None) -> ManagedProcess:
    prefix = (
        [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    )
    return ManagedProcess(
        ns.argv(*prefix, sys.executable, "-m", "tests.tproxy.programs", *argv), cwd=ROOT
    )


class VmMesh:
    def __init__(self) -> None:
        #: Everything started, stopped by PID at the end even if ``start`` failed half-way.
        self.processes: list[ManagedProcess] = []
        #: The processes whose exit code must be 0 (kuma-cp, the two kuma-dp).
        self.checked: list[ManagedProcess] = []

    def start(self, make: Callable[[], Netns], tmp: Path) -> None:
        self.net, self.web, self.backend = make(), make(), make()
        veth(self.net, NET_WEB_IP, self.web, WEB_IP, ipv6=(NET_WEB_IP6, WEB_IP6))
        veth(
            self.net, NET_BACKEND_IP, self.backend, BACKEND_IP, ipv6=(NET_BACKEND_IP6, BACKEND_IP6)
        )
        self.net.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        self.net.run("sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
        self.net.run("ip", "addr", "add", f"{EXCLUDED_IP}/32", "dev", "lo")
        gateways = (
            (self.web, NET_WEB_IP, NET_WEB_IP6),
            (self.backend, NET_BACKEND_IP, NET_BACKEND_IP6),
        )
        for vm, gateway, gateway6 in gateways:
            vm.run("ip", "route", "add", "default", "via", gateway)
            vm.run("ip", "-6", "route", "add", "default", "via", gateway6)
            vm.set_resolv_conf(f"nameserver {gateway}\nnameserver {gateway6}\n")
        self.before = {
            vm.name: (vm.rules(), vm.rules("ip6tables-save")) for vm in (self.web, self.backend)
        }

        # The network: upstream DNS, an outside web server, kuma-cp.
        self.dns = self._start(_program(self.net, "dns", f"example.test={NET_WEB_IP}"), "dns ready")
        for port in (OUTSIDE_PORT, EXCLUDED_PORT):
            self._start(
                _program(self.net, "http", "--port", str(port), "--identity", f"outside:{port}"),
                "http ready",
            )
        self.store = tmp / "store"
        self.store.mkdir()
        self.signing_key = _signing_key(tmp, self.store)
        # The dp server's certificate names the addresses the VMs reach it at (the operator's
        # own certificate: kuma-cp's generated one names this host's own addresses only).
        cert, key = generate_ca_certificate([vm_gateway(BACKEND_IP), vm_gateway(WEB_IP)])
        self.ca = cert.decode()
        (tmp / "cp.crt").write_bytes(cert)
        (tmp / "cp.key").touch(mode=0o600)
        (tmp / "cp.key").write_bytes(key)
        env = {
            "KUMA_STORE_TYPE": "directory",
            "KUMA_STORE_DIRECTORY_PATH": str(self.store),
            "KUMA_DP_SERVER_PORT": "0",
            "KUMA_API_SERVER_HTTP_PORT": "0",
            "KUMA_API_SERVER_HTTPS_PORT": "0",
            "KUMA_GENERAL_WORK_DIR": str(tmp / "cp-work"),
            "KUMA_GENERAL_TLS_CERT_FILE": str(tmp / "cp.crt"),
            "KUMA_GENERAL_TLS_KEY_FILE": str(tmp / "cp.key"),
        }
        self.cp = ManagedProcess(self.net.argv(str(BIN / "kuma-cp"), "run"), env=env, cwd=tmp)
        self.processes.append(self.cp)
        self.checked.append(self.cp)
        ready = self.cp.wait_for_line("kuma-cp is ready", timeout=START)
        match = re.search(r"dp_port=(\d+)", ready)
        assert match, ready
        self.dp_port = int(match.group(1))

        # The backend VM: its app on all addresses, as it always was; one inbound port is left
        # out of the mesh.
        self.backend.run(
            KUMACTL, "install", "transparent-proxy", "--kuma-dp-uid", str(UID), "--redirect-dns",
            "--exclude-inbound-ports", str(BACKEND_EXCLUDED_INBOUND),
        )  # fmt: skip
        self._start(
            _program(self.backend, "http", "--port", "8080", "--identity", "backend"),
            "http ready",
        )  # fmt: skip
        for port in (BACKEND_EXCLUDED_INBOUND, BACKEND_OTHER_INBOUND):
            self._start(
                _program(
                    self.backend, "http", "--port", str(port), "--identity", f"backend:{port}"
                ),
                "http ready",
            )
        self.backend_dp = self._kuma_dp(self.backend, "backend-01", BACKEND_IP, "backend")

        # The web VM: the client side.
        self.web.run(
            KUMACTL, "install", "transparent-proxy", "--kuma-dp-user", str(UID), "--redirect-dns",
            "--exclude-outbound-ports", str(EXCLUDED_PORT), "--exclude-outbound-ips",
            f"{EXCLUDED_IP}/32",
        )  # fmt: skip
        self.web_dp = self._kuma_dp(self.web, "web-01", WEB_IP, "web")

    def _start(self, process: ManagedProcess, ready: str) -> ManagedProcess:
        self.processes.append(process)
        process.wait_for_line(ready, timeout=START)
        return process

    def _kuma_dp(self, vm: Netns, name: str, address: str, service: str) -> ManagedProcess:
        values = {"name": name, "address": address, "port": "8080", "service": service}
        # Inline: the kuma-dp user cannot read the test's temporary folder.
        token = _kumactl(
            "generate", "dataplane-token", "--name", name, "--valid-for", "1h",
            "--signing-key-path", str(self.signing_key), "--kid", "1",
        ).strip()  # fmt: skip
        argv = [
            "setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
            str(BIN / "kuma-dp"), "run", "--cp-address", f"https://{vm_gateway(address)}:"
            f"{self.dp_port}", "--dataplane", TEMPLATE,
            *(f"-v={key}={value}" for key, value in values.items()), "--drain-time", "1s",
            "--binary-path", str(ENVOY), "--dataplane-token", token,
            "--concurrency", "1",
        ]  # fmt: skip
        # The CA inline too ($KUMA_CONTROL_PLANE_CA_CERT), for the same reason as the token.
        process = ManagedProcess(vm.argv(*argv), env={"KUMA_CONTROL_PLANE_CA_CERT": self.ca})
        self.processes.append(process)
        self.checked.append(process)
        process.wait_for_line("Envoy started", timeout=START)
        eventually(lambda: self.admin(vm, "/ready").strip() == "LIVE", f"{name} LIVE", START)
        return process

    # --- looking at a VM ---

    def admin(self, vm: Netns, path: str) -> str:
        """Envoy's admin API inside the VM (curl as root: loopback is never redirected)."""
        return vm.run("curl", "-s", "-m", "5", f"http://127.0.0.1:{ADMIN_PORT}{path}").stdout

    def stat(self, vm: Netns, name: str) -> int:
        for line in self.admin(vm, f"/stats?filter=^{re.escape(name)}$").splitlines():
            key, _, value = line.partition(": ")
            if key == name and value.strip().isdigit():
                return int(value)
        return 0

    def curl(self, vm: Netns, url: str, uid: int | None = None) -> tuple[int, str]:
        prefix = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                         "--clear-groups"]  # fmt: skip
        done = vm.run(*prefix, "curl", "-s", "-m", "5", url, check=False)
        return done.returncode, done.stdout

    def stop(self) -> list[str]:
        problems = []
        for process in reversed(self.processes):
            code = process.stop()
            if process in self.checked and code not in (0, None):
                problems.append(f"{process.argv} exited {code}:\n{process.output()[-3000:]}")
        return problems


def _kumactl(*args: str) -> str:
    done = subprocess.run([KUMACTL, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _signing_key(tmp: Path, store: Path) -> Path:
    """A dataplane-token signing key, dropped into the store as the mesh's key Secret (mode
    0600) before kuma-cp starts, so tokens can be signed offline (as tests/e2e does)."""
    key = tmp / "signing-key.pem"
    key.write_text(_kumactl("generate", "signing-key", "--format", "pem"))
    key.chmod(0o600)
    secret = store / "signing-key.yaml"
    secret.touch(mode=0o600)
    secret.write_text(
        "type: Secret\nmesh: default\nname: dataplane-token-signing-key-default-1\n"
        f"data: {base64.b64encode(key.read_bytes()).decode()}\n"
    )
    return key


def vm_gateway(address: str) -> str:
    return address.rsplit(".", 1)[0] + ".1"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmMesh]:
    made: list[Netns] = []

    def make() -> Netns:
        ns = Netns(f"kpt-{len(made)}-{time.monotonic_ns() % 10**8}")
        made.append(ns)
        return ns

    world = VmMesh()
    try:
        world.start(make, tmp_path_factory.mktemp("vm-mesh"))
        yield world
    finally:
        problems = world.stop()
        for ns in made:
            ns.delete()
    assert not problems, problems


PASSTHROUGH = "cluster.outbound_passthrough_ipv4.upstream_cx_total"
#: Connections the backend's inbound listener got: it binds no socket, so only the inbound
#: redirect (iptables → 15006 → original destination) can hand it one.
BACKEND_INBOUND = f"listener.{BACKEND_IP}_8080.downstream_cx_total"
INBOUND_PASSTHROUGH = "cluster.inbound_passthrough_ipv4.upstream_cx_total"
PASSTHROUGH_V6 = "cluster.outbound_passthrough_ipv6.upstream_cx_total"
INBOUND_PASSTHROUGH_V6 = "cluster.inbound_passthrough_ipv6.upstream_cx_total"


def test_the_app_reaches_backend_mesh_through_both_sidecars(mesh: VmMesh) -> None:
    sent = mesh.stat(mesh.web, "cluster.backend.upstream_rq_total")
    received = mesh.stat(mesh.backend, BACKEND_INBOUND)

    def call() -> str | None:
        code, body = mesh.curl(mesh.web, "http://backend.mesh/")
        return body if code == 0 else None

    assert eventually(call, "curl http://backend.mesh/ from web", START) == "backend"
    # web's outbound listener for the VIP sent it to the backend cluster; the backend VM's
    # PREROUTING handed it to its Envoy's inbound redirect listener.
    assert mesh.stat(mesh.web, "cluster.backend.upstream_rq_total") > sent
    assert mesh.stat(mesh.backend, BACKEND_INBOUND) > received
    # The name was answered by web's Envoy (its DNS listener), not by the upstream.
    assert mesh.stat(mesh.web, "dns_filter.kuma_dns.local_a_record_answers") >= 1
    assert "backend.mesh" not in mesh.dns.output()


def test_the_excluded_uid_is_not_redirected(mesh: VmMesh) -> None:
    url = f"http://{NET_WEB_IP}:{OUTSIDE_PORT}/"
    before = mesh.stat(mesh.web, PASSTHROUGH)
    assert mesh.curl(mesh.web, url, uid=UID) == (0, f"outside:{OUTSIDE_PORT}")
    assert mesh.stat(mesh.web, PASSTHROUGH) == before
    # Anyone else's connection goes through Envoy's passthrough (the check has teeth).
    assert mesh.curl(mesh.web, url) == (0, f"outside:{OUTSIDE_PORT}")
    assert mesh.stat(mesh.web, PASSTHROUGH) == before + 1


def test_excluded_ports_and_ips_bypass_envoy(mesh: VmMesh) -> None:
    before = mesh.stat(mesh.web, PASSTHROUGH)
    port_url = f"http://{NET_WEB_IP}:{EXCLUDED_PORT}/"
    assert mesh.curl(mesh.web, port_url) == (0, f"outside:{EXCLUDED_PORT}")
    assert mesh.curl(mesh.web, f"http://{EXCLUDED_IP}:{OUTSIDE_PORT}/") == (
        0,
        f"outside:{OUTSIDE_PORT}",
    )
    assert mesh.stat(mesh.web, PASSTHROUGH) == before
    # An excluded inbound port of the backend VM is reached without its Envoy; another port
    # outside the mesh goes through its inbound passthrough (the check has teeth).
    received = mesh.stat(mesh.backend, INBOUND_PASSTHROUGH)
    excluded = f"http://{BACKEND_IP}:{BACKEND_EXCLUDED_INBOUND}/"
    assert mesh.curl(mesh.web, excluded, uid=UID) == (0, f"backend:{BACKEND_EXCLUDED_INBOUND}")
    assert mesh.stat(mesh.backend, INBOUND_PASSTHROUGH) == received
    other = f"http://{BACKEND_IP}:{BACKEND_OTHER_INBOUND}/"
    assert mesh.curl(mesh.web, other, uid=UID) == (0, f"backend:{BACKEND_OTHER_INBOUND}")
    assert mesh.stat(mesh.backend, INBOUND_PASSTHROUGH) == received + 1


def test_a_non_mesh_name_still_resolves_upstream(mesh: VmMesh) -> None:
    queries = mesh.stat(mesh.web, "dns_filter.kuma_dns.downstream_rx_queries")
    code, body = mesh.curl(mesh.web, f"http://example.test:{OUTSIDE_PORT}/")
    assert (code, body) == (0, f"outside:{OUTSIDE_PORT}")
    # The query went to web's Envoy (redirected), which asked the upstream resolver.
    assert mesh.stat(mesh.web, "dns_filter.kuma_dns.downstream_rx_queries") > queries
    assert "query example.test A" in mesh.dns.output()
    missing = mesh.web.run("getent", "ahostsv4", "nowhere.test", check=False)
    assert missing.returncode == 2  # not found, as the upstream says


def test_a_new_service_resolves_once_its_first_dataplane_exists(mesh: VmMesh) -> None:
    """Each new service's name resolves soon after its first Dataplane is stored (the time is
    printed, not asserted), and no query of a known name is lost while web's DNS listener is
    replaced for each new VIP."""
    hammer = _program(mesh.web, "hammer", "backend.mesh", "--server", NET_WEB_IP, "--seconds", "60")
    mesh.processes.append(hammer)
    hammer.wait_for_line("hammering", timeout=START)
    for index in range(3):
        service = f"api-{index}"
        watcher = _program(
            mesh.web, "resolve", f"{service}.mesh", "--timeout", str(RESOLVE_DEADLINE)
        )
        mesh.processes.append(watcher)
        watcher.wait_for_line("resolving", timeout=START)
        document = dataplane(f"{service}-01", BACKEND_IP, 8081 + index, service)
        temporary = mesh.store / f".{service}.yaml.tmp"
        temporary.write_text(document)
        created = time.monotonic()
        temporary.rename(mesh.store / f"{service}.yaml")
        line = watcher.wait_for_line("resolved", timeout=RESOLVE_DEADLINE + 5)
        _, at, address = line.split()
        assert ipaddress.ip_address(address) in ipaddress.ip_network("240.0.0.0/4")  # a VIP
        elapsed = float(at) - created
        print(
            f"{service}.mesh resolved {elapsed * 1000:.0f} ms after its first Dataplane was stored"
        )
        assert watcher.wait() == 0
    hammer.signal(signal.SIGINT)
    hammer.wait()
    counts = hammer.output()
    print(counts)
    match = re.search(r"asked (\d+) answered (\d+) lost (\d+)", counts)
    assert match, counts
    asked, answered, lost = (int(g) for g in match.groups())
    assert asked > 0
    assert (answered, lost) == (asked, 0), counts


def test_ipv6_is_redirected_too(mesh: VmMesh) -> None:
    """Dual-stack VMs: ip6tables hands IPv6 connections and DNS to the same Envoy."""
    # Outbound: root's IPv6 connection goes through the IPv6 outbound passthrough; uid 5678's not.
    url = f"http://[{NET_WEB_IP6}]:{OUTSIDE_PORT}/"
    before = mesh.stat(mesh.web, PASSTHROUGH_V6)
    assert mesh.curl(mesh.web, url, uid=UID) == (0, f"outside:{OUTSIDE_PORT}")
    assert mesh.stat(mesh.web, PASSTHROUGH_V6) == before
    assert mesh.curl(mesh.web, url) == (0, f"outside:{OUTSIDE_PORT}")
    assert mesh.stat(mesh.web, PASSTHROUGH_V6) == before + 1
    # Inbound: an IPv6 connection to the backend VM goes through its Envoy.
    received = mesh.stat(mesh.backend, INBOUND_PASSTHROUGH_V6)
    other = f"http://[{BACKEND_IP6}]:{BACKEND_OTHER_INBOUND}/"
    assert mesh.curl(mesh.web, other, uid=UID) == (0, f"backend:{BACKEND_OTHER_INBOUND}")
    assert mesh.stat(mesh.backend, INBOUND_PASSTHROUGH_V6) == received + 1
    # DNS to the IPv6 nameserver of resolv.conf is answered by Envoy on [::1].
    asked = mesh.stat(mesh.web, "dns_filter.kuma_dns.downstream_rx_queries")
    query = mesh.web.run(
        sys.executable, "-m", "tests.tproxy.programs", "query", "backend.mesh",
        "--server", NET_WEB_IP6,
    ).stdout  # fmt: skip
    assert re.fullmatch(r"answer NOERROR 2[45]\d\.\d+\.\d+\.\d+\n", query), query
    assert mesh.stat(mesh.web, "dns_filter.kuma_dns.downstream_rx_queries") == asked + 1


def test_an_external_service_is_reached_at_its_vips(mesh: VmMesh) -> None:
    """An ExternalService for the outside server: the unchanged app reaches it by its own host
    name and by ``<service>.mesh``, both answered by web's Envoy with VIPs (issue 12, Kuma's
    host and service entries), through the ExternalService's cluster."""
    document = (
        "type: ExternalService\nmesh: default\nname: outside\n"
        f"networking: {{address: 'example.test:{OUTSIDE_PORT}'}}\n"
        "tags: {kuma.io/service: outside}\n"
    )
    temporary = mesh.store / ".outside.yaml.tmp"
    temporary.write_text(document)
    temporary.rename(mesh.store / "externalservice-outside.yaml")
    answered = mesh.stat(mesh.web, "dns_filter.kuma_dns.local_a_record_answers")
    for url in (f"http://example.test:{OUTSIDE_PORT}/", f"http://outside.mesh:{OUTSIDE_PORT}/"):
        sent = mesh.stat(mesh.web, "cluster.outside.upstream_cx_total")

        def call(url: str = url, sent: int = sent) -> str | None:
            # Until web's Envoy holds the ExternalService, example.test still resolves upstream
            # and the request gets through by passthrough: only an answer that went through the
            # ExternalService's cluster counts.
            code, body = mesh.curl(mesh.web, url)
            through = mesh.stat(mesh.web, "cluster.outside.upstream_cx_total") > sent
            return body if code == 0 and through else None

        assert eventually(call, f"curl {url} from web", START) == f"outside:{OUTSIDE_PORT}"
    # Both names were answered by web's Envoy (example.test went upstream before).
    assert mesh.stat(mesh.web, "dns_filter.kuma_dns.local_a_record_answers") >= answered + 2


def test_uninstall_restores_each_vm(mesh: VmMesh) -> None:
    for process in (mesh.web_dp, mesh.backend_dp):
        assert process.stop() == 0, process.output()[-3000:]
    for vm in (mesh.web, mesh.backend):
        out = vm.run(KUMACTL, "uninstall", "transparent-proxy").stdout
        assert "cleaned up successfully" in out
        assert (vm.rules(), vm.rules("ip6tables-save")) == mesh.before[vm.name]
    # Without the rules nothing answers .mesh names any more: the upstream says NXDOMAIN.
    assert mesh.web.run("getent", "ahostsv4", "backend.mesh", check=False).returncode == 2
