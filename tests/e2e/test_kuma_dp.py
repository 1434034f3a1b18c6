"""kuma-cp and kuma-dp as users run them: real processes, real Envoys, real HTTP traffic.

web's sidecar reaches the backend service through its outbound; stopping backend's kuma-dp
stops its Envoy and, after the (shortened) deregistration delay, removes its Dataplane from the
store and from web's endpoints; starting it again brings it back. A kuma-dp started before
kuma-cp waits for it. Every process is stopped by PID; every wait has a deadline.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml

from kuma.cp.registration import REGISTRATION_LABEL
from kuma.resources import decode
from kuma.tls.certs import generate_ca_certificate
from tests.fixtures.envoy import (
    HttpService,
    envoy_shared_memory,
    eventually,
    free_ports,
    http_get,
)
from tests.fixtures.processes import ManagedProcess, kuma_cp

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

START = 20.0

TEMPLATE = """\
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: 127.0.0.1
  admin:
    port: {{ admin }}
  inbound:
  - port: {{ inbound }}
    servicePort: {{ app }}
    tags:
      kuma.io/service: {{ service }}
      kuma.io/protocol: http
"""
OUTBOUND = """\
  outbound:
  - port: {{ outbound }}
    tags:
      kuma.io/service: backend
"""


def kumactl(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "kuma.cli.main", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class Cluster:
    """kuma-cp on a directory store and the kuma-dp processes of one test.

    Tokens are signed offline, as an operator may do before any control plane runs: the
    signing key comes from ``kumactl generate signing-key`` and is dropped into the store
    folder as the mesh's key Secret (mode 0600), and every kuma-dp gets a token from
    ``kumactl generate dataplane-token --signing-key-path --kid 1`` for its own name."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        #: The certificate kuma-dp trusts: kuma-cp's generated one once it runs, or the
        #: operator's own (``use_certificate_files``).
        self.ca_file: Path | None = None
        self.cert_env: dict[str, str] = {}
        self.store = tmp_path / "store"
        self.store.mkdir()
        self.signing_key = tmp_path / "signing-key.pem"
        self.signing_key.write_text(kumactl("generate", "signing-key", "--format", "pem"))
        self.signing_key.chmod(0o600)
        secret = self.store / "signing-key.yaml"
        secret.touch(mode=0o600)
        secret.write_text(
            "type: Secret\nmesh: default\nname: dataplane-token-signing-key-default-1\n"
            f"data: {base64.b64encode(self.signing_key.read_bytes()).decode()}\n"
        )
        self.cp: ManagedProcess | None = None
        self.dp_port = 0
        self.dps: list[ManagedProcess] = []
        self.services: list[HttpService] = []

    def start_cp(self, port: int = 0) -> None:
        env = {
            "KUMA_STORE_TYPE": "directory",
            "KUMA_STORE_DIRECTORY_PATH": str(self.store),
            "KUMA_DP_SERVER_INTERFACE": "127.0.0.1",
            "KUMA_DP_SERVER_PORT": str(port),
            "KUMA_API_SERVER_HTTP_PORT": "0",
            "KUMA_XDS_SERVER_DATAPLANE_DEREGISTRATION_DELAY": "1s",
            **self.cert_env,
        }
        self.cp = kuma_cp(None, env=env)
        line = self.cp.wait_for_line("kuma-cp is ready", timeout=START)
        match = re.search(r"dp_port=(\d+)", line)
        assert match, line
        self.dp_port = int(match.group(1))
        if self.ca_file is None:
            assert self.cp.work_dir is not None
            self.ca_file = self.cp.work_dir / "kuma-cp.crt"

    def use_certificate_files(self) -> None:
        """Serve a certificate of the operator's (general.tlsCertFile/tlsKeyFile), known
        before kuma-cp starts."""
        cert, key = generate_ca_certificate(["localhost", "127.0.0.1"])
        self.ca_file, key_file = self.tmp / "cp.crt", self.tmp / "cp.key"
        self.ca_file.write_bytes(cert)
        key_file.touch(mode=0o600)
        key_file.write_bytes(key)
        self.cert_env = {
            "KUMA_GENERAL_TLS_CERT_FILE": str(self.ca_file),
            "KUMA_GENERAL_TLS_KEY_FILE": str(key_file),
        }

    def kuma_dp(
        self,
        name: str,
        service: str,
        ports: dict[str, int],
        *,
        address: str = "127.0.0.1",
        drain_time: str = "1s",
        extra: Sequence[str] = (),
    ) -> ManagedProcess:
        template = TEMPLATE + (OUTBOUND if "outbound" in ports else "")
        template = template.replace("address: 127.0.0.1", f"address: {address}")
        path = self.tmp / f"{name}.yaml"
        path.write_text(template)
        values = {"name": name, "service": service, **ports}
        token = self.tmp / f"{name}.token"
        offline = ["--signing-key-path", str(self.signing_key), "--kid", "1"]
        token.write_text(
            kumactl("generate", "dataplane-token", "--name", name, "--valid-for", "1h", *offline)
        )
        assert self.ca_file is not None, "kuma-dp needs the certificate it trusts"
        argv = [sys.executable, "-m", "kuma.dp.cli", "run", "--cp-address",
                f"https://localhost:{self.dp_port}", "-d", str(path), "--drain-time", drain_time,
                "--concurrency", "1", "--dataplane-token-file", str(token),
                "--ca-cert-file", str(self.ca_file), *extra]  # fmt: skip
        for key, value in values.items():
            argv += ["-v", f"{key}={value}"]
        process = ManagedProcess(argv)
        self.dps.append(process)
        return process

    def registered(self) -> dict[str, dict[str, str]]:
        """name -> labels of every Dataplane in the store folder."""
        found: dict[str, dict[str, str]] = {}
        for path in self.store.glob("*.yaml"):
            for resource in decode(path.read_text()):
                if resource.TYPE == "Dataplane":
                    found[resource.name] = resource.labels
        return found

    def stop(self) -> list[str]:
        """Stop everything by PID; the problems seen (a crash, an Envoy left running)."""
        problems: list[str] = []
        for process in self.dps:
            if process.stop() not in (0, None):
                problems.append(f"{process.argv} exited {process.proc.returncode}")
            problems += [f"Envoy {pid} outlived its kuma-dp" for pid in envoy_pids(process)
                         if _kill_if_alive(pid)]  # fmt: skip
        if self.cp is not None and self.cp.stop() != 0:
            problems.append("kuma-cp did not stop cleanly:\n" + self.cp.output())
        for service in self.services:
            service.close()
        return problems


def envoy_pids(process: ManagedProcess) -> list[int]:
    return [int(m) for m in re.findall(r"Envoy started \(pid (\d+)\)", process.output())]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not running either.
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def _kill_if_alive(pid: int) -> bool:
    if alive(pid):
        os.kill(pid, 9)
        return True
    return False


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    before = envoy_shared_memory()
    running = Cluster(tmp_path)
    try:
        yield running
    finally:
        problems = running.stop()
    assert not problems, problems
    assert envoy_shared_memory() - before == set()


def backend_endpoints(admin_port: int) -> list[str]:
    status, body = http_get(admin_port, "/clusters")
    assert status == 200
    return [line for line in body.splitlines() if line.startswith("backend::127.0.0.1:")]


def test_two_sidecars_register_serve_traffic_and_deregister(cluster: Cluster) -> None:
    # web's outbound logs through a MeshAccessLog Tcp backend: Envoy -> web's kuma-dp's pipe
    # (announced in the node metadata, in its config dir) -> this TCP listener.
    tcp_logs = socket.create_server(("127.0.0.1", 0))
    tcp_logs.settimeout(START)
    address = f"127.0.0.1:{tcp_logs.getsockname()[1]}"
    backends = [{"type": "Tcp", "tcp": {"address": address}}]
    to = [
        {"targetRef": {"kind": "MeshService", "name": "backend"}, "default": {"backends": backends}}
    ]
    policy = {"type": "MeshAccessLog", "mesh": "default", "name": "logs",
              "spec": {"targetRef": {"kind": "Mesh"}, "to": to}}  # fmt: skip
    (cluster.store / "meshaccesslog-logs.yaml").write_text(yaml.safe_dump(policy))
    cluster.start_cp()
    web_in, web_out, web_admin, be_in, be_admin = free_ports(5)
    backend_app, web_app = HttpService("backend"), HttpService("web")
    cluster.services += [backend_app, web_app]
    backend_ports = {"inbound": be_in, "app": backend_app.port, "admin": be_admin}
    backend = cluster.kuma_dp("backend-01", "backend", backend_ports)
    cluster.kuma_dp(
        "web-01",
        "web",
        {"inbound": web_in, "app": web_app.port, "admin": web_admin, "outbound": web_out},
    )

    def through_web() -> str | None:
        status, body = http_get(web_out)
        return body if status == 200 else None

    assert eventually(through_web, "web -> backend through both sidecars", START) == "backend"
    assert backend_app.hits >= 1
    with tcp_logs, tcp_logs.accept()[0] as connection:
        connection.settimeout(START)
        line = connection.makefile("rb").readline().decode()
    assert re.search(r'default "GET / HTTP/1\.1" \d+ .* "web" "backend" "127\.0\.0\.1" ', line)
    dump = http_get(web_admin, "/config_dump")[1]
    assert re.search(r'"path": "/tmp/kuma-dp-\w+/kuma-al-web-01-default\.sock"', dump), dump
    registered = cluster.registered()
    assert set(registered) == {"backend-01", "web-01"}
    assert all(REGISTRATION_LABEL in labels for labels in registered.values())
    # The bootstrap kuma-dp received puts Envoy's admin API on the Dataplane's admin port.
    assert http_get(be_admin, "/ready")[0] == 200

    # SIGTERM: kuma-dp drains and stops Envoy, then exits with Envoy's status.
    (backend_envoy,) = envoy_pids(backend)
    backend.signal(15)
    assert backend.wait(timeout=START) == 0, backend.output()
    assert "caught SIGTERM: draining Envoy" in backend.output()
    assert "[envoy] " in backend.output()  # Envoy's own log, passed through
    assert not alive(backend_envoy)
    # After the 1 s delay the Dataplane leaves the store and web's endpoints.
    eventually(lambda: "backend-01" not in cluster.registered(), "backend-01 deregistered")
    eventually(lambda: backend_endpoints(web_admin) == [], "no backend endpoint at web")
    assert "proxy deregistered" in cluster.cp.output()  # type: ignore[union-attr]

    # Started again, it registers again and traffic flows again.
    cluster.kuma_dp("backend-01", "backend", backend_ports)
    assert eventually(through_web, "web -> backend again", START) == "backend"
    assert "backend-01" in cluster.registered()


def test_kuma_dp_waits_for_kuma_cp(cluster: Cluster) -> None:
    (cp_port, inbound, admin) = free_ports(3)
    app = HttpService("backend")
    cluster.services.append(app)
    cluster.dp_port = cp_port  # chosen in advance: kuma-cp is not running yet
    cluster.use_certificate_files()
    dp = cluster.kuma_dp(
        "backend-01", "backend", {"inbound": inbound, "app": app.port, "admin": admin}
    )
    dp.wait_for_line("waiting for the control plane", timeout=START)
    assert dp.count("Envoy started") == 0
    cluster.start_cp(cp_port)
    dp.wait_for_line("Envoy started", timeout=START)
    eventually(lambda: "backend-01" in cluster.registered(), "backend-01 registered", START)

    def served() -> str | None:
        status, body = http_get(inbound)
        return body if status == 200 else None

    # Envoy got its listeners from kuma-cp: the inbound serves the app.
    assert eventually(served, "backend through its own inbound", START) == "backend"
    config = yaml.safe_load(http_get(admin, "/config_dump?resource=dynamic_listeners")[1])
    assert config["configs"], "no listeners from kuma-cp"
